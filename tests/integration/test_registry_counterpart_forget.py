"""What ``exchangectl replay counterpart`` forgets before it applies every notification again
(``counterpart.forget_counterpart_records``): every row a counterpart told the registry, in every
record table, and the corrections counterparts applied to them; never the registry's own records,
a correction of them (its own, or a counterpart's repair that brought one of them back), nor
another jurisdiction's (real PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from services.registry.service_layer.counterpart import forget_counterpart_records
from shared.db import init_connection, migrate

HERE, ORIGIN, ELSEWHERE = "440703", "320412", "110101"


async def _family(conn: asyncpg.Connection, jurisdiction: str, source: str) -> dict[str, str]:
    """A person, a move, a marriage, a pregnancy, a birth and a certificate copy of ``source``
    held at ``jurisdiction``: their keys as text."""
    keys = {k: str(uuid.uuid4()) for k in ("migration", "marriage", "pregnancy", "birth")}
    wife, husband = f"{uuid.uuid4().int % 10**17:017d}X", f"{uuid.uuid4().int % 10**18:018d}"
    await conn.execute(
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                                residence_division, source_division)
           VALUES ($1, $2, 's', '某', 'F', '1990-01-01', $3, $1, $3)""",
        jurisdiction,
        wife,
        source,
    )
    await conn.execute(
        """INSERT INTO migrations (id, jurisdiction, id_number, kind, from_division, to_division,
                                   migration_date, source_division)
           VALUES ($1, $2, $3, 'arrived', '130102', $2, '2025-02-01', $4)""",
        uuid.UUID(keys["migration"]),
        jurisdiction,
        wife,
        source,
    )
    await conn.execute(
        """INSERT INTO marriages (id, jurisdiction, spouse_a_id_number, spouse_b_id_number, marriage_date,
                                  source_division)
           VALUES ($1, $2, $3, $4, '2025-05-20', $5)""",
        uuid.UUID(keys["marriage"]),
        jurisdiction,
        husband,
        wife,
        source,
    )
    await conn.execute(
        """INSERT INTO pregnancies (id, jurisdiction, mother_id_number, registered_in, registered_on,
                                    source_division)
           VALUES ($1, $2, $3, $4, '2025-06-01', $4)""",
        uuid.UUID(keys["pregnancy"]),
        jurisdiction,
        wife,
        source,
    )
    await conn.execute(
        """INSERT INTO births (id, jurisdiction, medical_certificate_number, child_name, child_sex,
                               child_birth_date, mother_id_number, birth_order, birth_division, source_division)
           VALUES ($1, $2, $3, '某', 'F', '2025-12-01', $4, 1, $5, $5)""",
        uuid.UUID(keys["birth"]),
        jurisdiction,
        keys["birth"],
        wife,
        source,
    )
    number = f"{source}-2026-{keys['birth'][:8].upper()}"
    await conn.execute(
        """INSERT INTO counterpart_certificates (jurisdiction, number, holder_id_number, issuer, issued_on,
                                                 valid_until, source_division)
           VALUES ($1, $2, $3, $4, '2026-01-01', '2027-01-01', $4)""",
        jurisdiction,
        number,
        wife,
        source,
    )
    return {**keys, "person": wife, "certificate": number}


async def _correction(conn: asyncpg.Connection, jurisdiction: str, source: str, kind: str, key: str) -> None:
    await conn.execute(
        """INSERT INTO corrections (id, jurisdiction, corrected_event_id, record_type, record_id, changes,
                                    reason, source_division)
           VALUES ($1, $2, $1, $3, $4, '{"x": 1}', 'a reason', $5)""",
        uuid.uuid4(),
        jurisdiction,
        kind,
        key,
        source,
    )


async def _held(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await conn.fetch(
        """SELECT 'persons' AS t, jurisdiction, source_division FROM persons
           UNION ALL SELECT 'migrations', jurisdiction, source_division FROM migrations
           UNION ALL SELECT 'marriages', jurisdiction, source_division FROM marriages
           UNION ALL SELECT 'marriage_spouses', s.jurisdiction, m.source_division
                       FROM marriage_spouses s JOIN marriages m ON (m.jurisdiction, m.id) = (s.jurisdiction, s.marriage_id)
           UNION ALL SELECT 'pregnancies', jurisdiction, source_division FROM pregnancies
           UNION ALL SELECT 'births', jurisdiction, source_division FROM births
           UNION ALL SELECT 'counterpart_certificates', jurisdiction, source_division FROM counterpart_certificates
           UNION ALL SELECT 'corrections of ' || record_type, jurisdiction, source_division FROM corrections"""
    )
    return sorted((r["t"], r["jurisdiction"], r["source_division"]) for r in rows)


async def test_every_counterpart_record_and_its_corrections_are_forgotten_and_nothing_else(
    fresh_db: str,
) -> None:
    await migrate(fresh_db, "registry", Path("services/registry/migrations"))
    conn = await asyncpg.connect(fresh_db)
    await init_connection(conn)
    try:
        told = await _family(conn, HERE, ORIGIN)
        ours = await _family(conn, HERE, HERE)
        await conn.execute("DELETE FROM counterpart_certificates WHERE source_division = jurisdiction")
        theirs = await _family(conn, ORIGIN, ELSEWHERE)  # a jurisdiction this registry does not serve
        for kind in ("person", "migration", "marriage", "pregnancy", "birth", "certificate"):
            await _correction(conn, HERE, ORIGIN, kind, told[kind])  # applied from the origin: forgotten
            await _correction(conn, HERE, HERE, kind, ours[kind])  # our own: kept
            await _correction(conn, ORIGIN, ELSEWHERE, kind, theirs[kind])  # not served here: kept
        await _correction(conn, HERE, ORIGIN, "birth", ours["birth"])  # a repair that brought ours back
        await _correction(conn, HERE, ORIGIN, "birth", str(uuid.uuid4()))  # a retired duplicate of theirs
        before = await _held(conn)

        async with conn.transaction():
            cleared = await forget_counterpart_records(conn, [HERE], "counterpart")

        after = await _held(conn)
        gone = list(before)
        for row in after:
            gone.remove(row)
        assert sorted(gone) == sorted(
            [(t, HERE, ORIGIN) for t in ("persons", "migrations", "marriages", "pregnancies", "births")]
            + [("marriage_spouses", HERE, ORIGIN)] * 2
            + [("counterpart_certificates", HERE, ORIGIN)]
            + [
                (f"corrections of {k}", HERE, ORIGIN)
                for k in ("person", "migration", "marriage", "pregnancy", "certificate")
            ]
            + [("corrections of birth", HERE, ORIGIN)] * 2  # the birth's, and the retired duplicate's
        )
        assert ("corrections of birth", HERE, ORIGIN) in after  # the repair of our own birth
        assert {k: v for k, v in cleared.items() if k != "inbox"} == {
            "corrections": 7,
            "counterpart_certificates": 1,
            "pregnancies": 1,
            "marriages": 1,
            "births": 1,
            "migrations": 1,
            "persons": 1,
        }
    finally:
        await conn.close()
