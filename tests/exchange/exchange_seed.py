"""Seeding two registries' databases with the same shared migrants, fast (one INSERT ... SELECT each).

Used by the reconciliation test (10,000 subjects) and by bench/reconciliation.py (1,000,000).
Identity numbers are synthetic 18-character strings: reconciliation never validates them, and
the exchange sees only subject keys and hashes.
"""

from __future__ import annotations

import asyncpg

SEED_SQL = [
    """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                            residence_division, source_division)
       SELECT $1, 'P' || $4::text || lpad(i::text, 12, '0'), md5($4::text || ':' || i), '名' || i, 'F',
              date '1980-01-01' + (i % 7000), $2, $3, $1
       FROM generate_series(1, $5) AS i""",
    """INSERT INTO births (id, jurisdiction, medical_certificate_number, child_name, child_sex, child_birth_date,
                           mother_id_number, birth_order, birth_division, source_division)
       SELECT md5('b' || $4::text || i)::uuid, $1, 'B' || $4::text || lpad(i::text, 8, '0'), '子' || i, 'M',
              date '2015-01-01' + (i % 3000), 'P' || $4::text || lpad(i::text, 12, '0'), 1, $3, $1
       FROM generate_series(1, $5) AS i WHERE i % 3 = 0 AND $2::text IS NOT NULL""",
    """INSERT INTO marriages (id, jurisdiction, spouse_a_id_number, spouse_b_id_number, marriage_date,
                              source_division)
       SELECT md5('m' || $4::text || i)::uuid, $1, 'P' || $4::text || lpad(i::text, 12, '0'),
              'S' || $4::text || lpad(i::text, 12, '0'), date '2010-01-01' + (i % 4000), $1
       FROM generate_series(1, $5) AS i WHERE i % 10 = 0 AND $2::text IS NOT NULL AND $3::text IS NOT NULL""",
]


async def seed_side(dsn: str, here: str, hukou: str, residence: str, tag: str, subjects: int) -> None:
    """``subjects`` migrants registered at ``hukou`` and living at ``residence``, as ``here`` holds them."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for sql in SEED_SQL:
                await conn.execute(sql, here, hukou, residence, tag, subjects)
        await conn.execute("ANALYZE persons; ANALYZE births; ANALYZE marriages")
    finally:
        await conn.close()


def subject_of(tag: str, i: int) -> str:
    import hashlib

    return hashlib.md5(f"{tag}:{i}".encode()).hexdigest()  # noqa: S324 - matches the seed's md5()


async def plant(dsn_a: str, here_a: str, dsn_b: str, here_b: str, tag: str, i: int, what: str) -> str:
    """Make one difference for subject ``i``; returns the record key it concerns."""
    conn = await asyncpg.connect(dsn_b if what != "duplicate_birth" else dsn_a)
    try:
        if what == "missing_birth":  # i % 3 == 0: the birth is missing at side b
            return str(
                await conn.fetchval(
                    """DELETE FROM births WHERE jurisdiction = $1 AND medical_certificate_number = $2
                       RETURNING medical_certificate_number""",
                    here_b,
                    f"B{tag}{i:08d}",
                )
            )
        if what == "marriage_date":  # i % 10 == 0: side b has another marriage date
            return str(
                await conn.fetchval(
                    """UPDATE marriages SET marriage_date = marriage_date + 1
                       WHERE jurisdiction = $1 AND spouse_a_id_number = $2 RETURNING id""",
                    here_b,
                    f"P{tag}{i:012d}",
                )
            )
        if what == "duplicate_birth":  # i % 3 == 0: side a registered the same birth again
            return str(
                await conn.fetchval(
                    """INSERT INTO births (id, jurisdiction, medical_certificate_number, child_name, child_sex,
                                          child_birth_date, mother_id_number, birth_order, birth_division,
                                          source_division)
                       SELECT gen_random_uuid(), jurisdiction, 'D' || substr(medical_certificate_number, 2),
                              child_name, child_sex, child_birth_date, mother_id_number, 2, birth_division,
                              source_division
                       FROM births WHERE jurisdiction = $1 AND medical_certificate_number = $2
                       RETURNING medical_certificate_number""",
                    here_a,
                    f"B{tag}{i:08d}",
                )
            )
        raise ValueError(what)
    finally:
        await conn.close()
