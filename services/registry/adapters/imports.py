"""SQL of roster imports: their progress, their rejects, and persons inserted in bulk.

The persons go through a temporary staging table filled with COPY and an ``INSERT ... SELECT
... ON CONFLICT DO NOTHING``: COPY alone cannot skip a person the registry already holds, and
the rows it skipped are exactly the duplicates the registry's API would refuse.
"""

from __future__ import annotations

from typing import Any

import asyncpg

# The staging table's columns, in the order of the tuples ``insert_persons`` takes.
_DETAILS = ("name", "sex", "birth_date", "hukou_division", "residence_division")
PERSON_COLUMNS = ("line", "jurisdiction", "id_number", "subject", *_DETAILS, "source_division", "event_id")


async def start_run(conn: asyncpg.Connection, import_id: str, jurisdiction: str, file_name: str) -> Any:
    await conn.execute(
        """INSERT INTO import_runs (import_id, jurisdiction, file_name) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        import_id,
        jurisdiction,
        file_name,
    )
    return await get_run(conn, import_id, jurisdiction)


async def get_run(conn: asyncpg.Connection, import_id: str, jurisdiction: str, lock: bool = False) -> Any:
    return await conn.fetchrow(
        "SELECT * FROM import_runs WHERE import_id = $1 AND jurisdiction = $2"
        + (" FOR UPDATE" if lock else ""),
        import_id,
        jurisdiction,
    )


async def insert_persons(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> set[str]:
    """Insert the batch's persons (tuples in PERSON_COLUMNS order); returns the numbers inserted."""
    await conn.execute(
        """CREATE TEMP TABLE IF NOT EXISTS import_staging (
               line bigint, jurisdiction text, id_number text, subject text, name text, sex char(1),
               birth_date date, hukou_division text, residence_division text, source_division text,
               event_id uuid
           ) ON COMMIT DELETE ROWS"""
    )
    await conn.copy_records_to_table("import_staging", records=rows, columns=list(PERSON_COLUMNS))
    inserted = await conn.fetch(
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                                residence_division, source_division, event_id)
           SELECT jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                  residence_division, source_division, event_id
           FROM import_staging ORDER BY line
           ON CONFLICT DO NOTHING RETURNING id_number"""
    )
    return {r["id_number"] for r in inserted}


async def record_batch(
    conn: asyncpg.Connection,
    import_id: str,
    jurisdiction: str,
    last_line: int,
    counts: tuple[int, int],
    rejects: list[tuple[int, str | None, str, str]],
) -> None:
    """The batch's rejects and the progress mark (``counts``: imported, unchanged), in its transaction."""
    if rejects:
        await conn.copy_records_to_table(
            "import_rejects",
            records=[(import_id, jurisdiction, *r) for r in rejects],
            columns=["import_id", "jurisdiction", "line", "field", "rule", "message"],
        )
    await conn.execute(
        """UPDATE import_runs SET last_line = $3, batches = batches + 1, imported = imported + $4,
                  unchanged = unchanged + $5, rejected = rejected + $6, updated_at = now()
           WHERE import_id = $1 AND jurisdiction = $2""",
        import_id,
        jurisdiction,
        last_line,
        counts[0],
        counts[1],
        len(rejects),
    )


async def registered(conn: asyncpg.Connection, jurisdiction: str, numbers: list[str]) -> dict[str, Any]:
    """What the registry holds for these identity numbers (to tell a repeat from a conflict)."""
    rows = await conn.fetch(  # a probe per number: see shared.inbox.BY_KEY
        """SELECT p.id_number, p.name, p.sex, p.birth_date, p.hukou_division, p.residence_division
             FROM unnest($2::text[]) AS u(n)
             CROSS JOIN LATERAL (SELECT id_number, name, sex, birth_date, hukou_division, residence_division
                                   FROM persons WHERE jurisdiction = $1 AND id_number = u.n LIMIT 1) p""",
        jurisdiction,
        numbers,
    )
    return {r["id_number"]: r for r in rows}


async def finish_run(conn: asyncpg.Connection, import_id: str, jurisdiction: str) -> None:
    await conn.execute(
        """UPDATE import_runs SET state = 'done', finished_at = now(), updated_at = now()
           WHERE import_id = $1 AND jurisdiction = $2""",
        import_id,
        jurisdiction,
    )


async def rejects(conn: asyncpg.Connection, import_id: str, jurisdiction: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT line, field, rule, message FROM import_rejects
           WHERE import_id = $1 AND jurisdiction = $2 ORDER BY line""",
            import_id,
            jurisdiction,
        )
    )
