"""SQL of reconciliation: the records a jurisdiction holds about the migrants it shares with another.

A subject is shared by the pair (A, B) when its household registration is at one of them and
its residence at the other. Its records are the person itself, its moves, its marriages, the
births where it is the mother, its pregnancies (only those both sides hold: compared only
between the mother's own two registries, and only if they were her two when it was registered,
``_HELD_BY_COUNTERPART``), its moves (only those the counterpart was told of, ``_MOVE_TOLD_TO``)
and its certificates (the issuer's register on one side, the copy
from its notifications on the other). Each record also names its exchange key (``rid``: what a
correction names as ``record_id``) and its owner (the jurisdiction where it was registered). Each record is reduced to a canonical value list; digests sum a
60-bit hash of each (order-independent, and a duplicate changes the sum where XOR would cancel).
"""

from __future__ import annotations

import asyncpg

BUCKET = "(('x' || substr(s.subject, 1, 8))::bit(32)::bigint % $3)"

# Field names of each record kind, in the order of the canonical value list.
FIELDS: dict[str, tuple[str, ...]] = {
    "person": ("name", "sex", "birth_date", "hukou_division", "residence_division"),
    "birth": (
        "child_name",
        "child_sex",
        "child_birth_date",
        "child_id_number",
        "mother_id_number",
        "father_id_number",
        "birth_order",
        "birth_division",
    ),
    "marriage": (
        "spouse_a_id_number",
        "spouse_b_id_number",
        "marriage_date",
        "dissolution_date",
        "dissolution_reason",
    ),
    "migration": ("id_number", "kind", "from_division", "to_division", "migration_date"),
    "certificate": ("holder_id_number", "issuer", "issued_on", "valid_until", "revoked_on"),
    "pregnancy": (
        "mother_id_number",
        "registered_in",
        "registered_on",
        "expected_delivery",
        "closed_on",
        "outcome",
    ),
}


# A pregnancy is compared only with a counterpart that holds it too: the one it was sent to when
# registered here (``shared_with``) or, for a copy, its sender (``source_division``). This is
# ``domain/access.py`` ``held_by``, and each side applying it to its own records makes the two
# agree: a place she moved to later was never given the pregnancy, so it is not missing there.
_HELD_BY_COUNTERPART = "(n.source_division = $2 OR $2 = ANY(n.shared_with))"

# A move is compared only with a counterpart it was told to: the place she left, the place she
# arrived at, her hukou (the exchange's routing, ``counterparts``). Her hukou holds every move of
# hers; her residence after A -> B -> C was told of B -> C and of nothing before it. The rule
# reads the move's own values, which both sides hold, so the two sides apply it alike. (Births,
# marriages and certificates went where she and her family lived at the time, which only the
# exchange recorded: it compares those only where its holders say they were sent.)
_MOVE_TOLD_TO = "($2 IN (g.from_division, g.to_division) OR sb.hukou_division = $2)"


def _records_sql(bucket_filter: str) -> str:
    """Every record of the pair's shared subjects: (bucket, subject, kind, key, vals, identity, rid, owner)."""
    marriage = """SELECT sb.bucket, sb.subject, 'marriage', m.id::text,
           ARRAY[m.spouse_a_id_number, m.spouse_b_id_number, m.marriage_date::text,
                 coalesce(m.dissolution_date::text, ''), coalesce(m.dissolution_reason, '')],
           NULL, m.id::text, m.source_division
    FROM picked sb JOIN marriages m ON m.jurisdiction = $1 AND m.{} = sb.id_number"""
    return f"""
    WITH s AS (
        SELECT id_number, subject, hukou_division FROM persons
        WHERE jurisdiction = $1
          AND ((hukou_division = $1 AND residence_division = $2)
            OR (hukou_division = $2 AND residence_division = $1))
    ), sb AS (
        SELECT s.id_number, s.subject, s.hukou_division, {BUCKET}::int AS bucket FROM s
    ), picked AS (
        SELECT * FROM sb {bucket_filter}
    )
    SELECT sb.bucket, sb.subject, 'person' AS kind, 'person' AS key,
           ARRAY[p.name, p.sex::text, p.birth_date::text, p.hukou_division, p.residence_division] AS vals,
           NULL::text AS identity, p.id_number AS rid, p.source_division AS owner
    FROM picked sb JOIN persons p ON p.jurisdiction = $1 AND p.id_number = sb.id_number
    UNION ALL
    SELECT sb.bucket, sb.subject, 'birth', b.medical_certificate_number,
           ARRAY[b.child_name, b.child_sex::text, b.child_birth_date::text, coalesce(b.child_id_number, ''),
                 b.mother_id_number, coalesce(b.father_id_number, ''), b.birth_order::text, b.birth_division],
           md5(b.mother_id_number || '|' || b.child_birth_date::text || '|' || b.child_name),
           b.id::text, b.source_division
    FROM picked sb JOIN births b ON b.jurisdiction = $1 AND b.mother_id_number = sb.id_number
    UNION ALL
    {marriage.format("spouse_a_id_number")}
    UNION ALL
    {marriage.format("spouse_b_id_number")}
    UNION ALL
    SELECT sb.bucket, sb.subject, 'migration', g.id::text,
           ARRAY[g.id_number, g.kind, g.from_division, g.to_division, g.migration_date::text], NULL, g.id::text,
           g.source_division
    FROM picked sb JOIN migrations g ON g.jurisdiction = $1 AND g.id_number = sb.id_number
    WHERE {_MOVE_TOLD_TO}
    UNION ALL
    SELECT sb.bucket, sb.subject, 'pregnancy', n.id::text,
           ARRAY[n.mother_id_number, n.registered_in, n.registered_on::text, coalesce(n.expected_delivery::text, ''),
                 coalesce(n.closed_on::text, ''), coalesce(n.outcome, '')], NULL, n.id::text,
           n.source_division
    FROM picked sb JOIN pregnancies n ON n.jurisdiction = $1 AND n.mother_id_number = sb.id_number
    WHERE {_HELD_BY_COUNTERPART}
    UNION ALL
    SELECT sb.bucket, sb.subject, 'certificate', c.number,
           ARRAY[c.holder_id_number, c.jurisdiction, c.issued_on::text, c.valid_until::text,
                 coalesce(c.revoked_on::text, '')], NULL, c.number, c.jurisdiction
    FROM picked sb JOIN certificates c ON c.jurisdiction = $1 AND c.holder_id_number = sb.id_number
    UNION ALL
    SELECT sb.bucket, sb.subject, 'certificate', k.number,
           ARRAY[k.holder_id_number, k.issuer, k.issued_on::text, k.valid_until::text,
                 coalesce(k.revoked_on::text, '')], NULL, k.number, k.source_division
    FROM picked sb JOIN counterpart_certificates k ON k.jurisdiction = $1 AND k.holder_id_number = sb.id_number
    """


# A record's hash covers subject, kind, key and values; 60 bits keep the sum exact in numeric.
_HASH = (
    "md5(r.subject || chr(31) || r.kind || chr(31) || r.key || chr(31) || array_to_string(r.vals, chr(31)))"
)


async def bucket_digests(
    conn: asyncpg.Connection,
    jurisdiction: str,
    counterpart: str,
    buckets: int,
    left_out: list[tuple[str, str]],
) -> list[asyncpg.Record]:
    """Per non-empty bucket: how many records, and the sum of their hashes, but for the records
    ``left_out`` (kind, exchange key), which the exchange set aside for both sides alike."""
    sql = f"""
    SELECT r.bucket, count(*) AS records, sum(('x' || substr({_HASH}, 1, 15))::bit(60)::bigint) AS digest
    FROM ({_records_sql("")}) r
    WHERE NOT EXISTS (SELECT 1 FROM unnest($4::text[], $5::text[]) x(kind, rid)
                      WHERE x.kind = r.kind AND x.rid = r.rid)
    GROUP BY r.bucket ORDER BY r.bucket"""
    kinds, rids = [kind for kind, _ in left_out], [rid for _, rid in left_out]
    rows: list[asyncpg.Record] = await conn.fetch(sql, jurisdiction, counterpart, buckets, kinds, rids)
    return rows


async def duplicates(conn: asyncpg.Connection, jurisdiction: str, counterpart: str) -> list[asyncpg.Record]:
    """Records held twice on this side: same identity (one birth, two certificates), the later key named.

    Found here rather than by comparing sides, because a duplicate both sides hold leaves the
    digests equal.
    """
    # Births only (the records with an identity): mother, date and child's name name one birth.
    sql = """
    SELECT subject, 'birth' AS kind, key, first_key, owner FROM (
        SELECT s.subject, b.medical_certificate_number AS key, b.source_division AS owner,
               first_value(b.medical_certificate_number) OVER w AS first_key, row_number() OVER w AS rn
        FROM persons s JOIN births b ON b.jurisdiction = $1 AND b.mother_id_number = s.id_number
        WHERE s.jurisdiction = $1
          AND ((s.hukou_division = $1 AND s.residence_division = $2)
            OR (s.hukou_division = $2 AND s.residence_division = $1))
        WINDOW w AS (PARTITION BY s.subject, b.child_birth_date, b.child_name ORDER BY b.medical_certificate_number)
    ) d WHERE rn > 1 ORDER BY subject, key"""
    rows: list[asyncpg.Record] = await conn.fetch(sql, jurisdiction, counterpart)
    return rows


async def bucket_records(
    conn: asyncpg.Connection, jurisdiction: str, counterpart: str, buckets: int, selected: list[int]
) -> list[asyncpg.Record]:
    """The records of the selected buckets, with their exchange key, full hash and canonical values."""
    sql = f"""
    SELECT r.subject, r.kind, r.key, r.vals, r.identity, r.owner, r.rid, {_HASH} AS hash
    FROM ({_records_sql("WHERE bucket = ANY($4::int[])")}) r ORDER BY r.subject, r.kind, r.key"""
    rows: list[asyncpg.Record] = await conn.fetch(sql, jurisdiction, counterpart, buckets, selected)
    return rows


async def held_record(
    conn: asyncpg.Connection, jurisdiction: str, counterpart: str, subject: str, kind: str, key: str
) -> tuple[str, dict[str, str | None]] | None:
    """One record's exchange key and canonical values by field name ('' read as None), or None
    if this side does not hold it."""
    sql = f"""
    SELECT r.rid, r.vals FROM ({_records_sql("WHERE subject = $4")}) r WHERE r.kind = $5 AND r.key = $6"""
    row = await conn.fetchrow(sql, jurisdiction, counterpart, 1, subject, kind, key)
    if row is None:
        return None
    values = {f: (v if v != "" else None) for f, v in zip(FIELDS[kind], row["vals"], strict=True)}
    return str(row["rid"]), values


async def whereabouts(
    conn: asyncpg.Connection, jurisdiction: str, subject: str
) -> tuple[str | None, str | None]:
    """The subject's household registration and residence as this jurisdiction holds them."""
    row = await conn.fetchrow(
        "SELECT hukou_division, residence_division FROM persons WHERE jurisdiction = $1 AND subject = $2",
        jurisdiction,
        subject,
    )
    return (row["hukou_division"], row["residence_division"]) if row else (None, None)
