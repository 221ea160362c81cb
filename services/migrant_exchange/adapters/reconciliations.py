"""SQL of reconciliation runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg


async def start_run(conn: asyncpg.Connection, a: str, b: str, trigger: str, buckets: int) -> uuid.UUID:
    run_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO reconciliations (id, division_a, division_b, trigger, buckets) VALUES ($1,$2,$3,$4,$5)",
        run_id,
        a,
        b,
        trigger,
        buckets,
    )
    return run_id


async def finish_run(
    conn: asyncpg.Connection, run_id: uuid.UUID, records_a: int, records_b: int, differing: int, found: int
) -> None:
    await conn.execute(
        """UPDATE reconciliations SET state = 'finished', finished_at = now(), records_a = $2, records_b = $3,
                  differing_buckets = $4, discrepancies = $5 WHERE id = $1""",
        run_id,
        records_a,
        records_b,
        differing,
        found,
    )


async def fail_run(conn: asyncpg.Connection, run_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        "UPDATE reconciliations SET state = 'failed', finished_at = now(), error = $2 WHERE id = $1",
        run_id,
        error[:500],
    )


async def get_run(conn: asyncpg.Connection, run_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM reconciliations WHERE id = $1", run_id)


async def set_aside(conn: asyncpg.Connection, a: str, b: str) -> list[tuple[str, str]]:
    """The records (kind, exchange key) the pair's last run set aside (``domain/reconcile.py`` ``set_aside``)."""
    rows = await conn.fetch(
        """SELECT record_type, record_key FROM reconciliation_set_aside
           WHERE division_a = $1 AND division_b = $2 ORDER BY record_type, record_key""",
        a,
        b,
    )
    return [(r["record_type"], r["record_key"]) for r in rows]


async def keep_set_aside(conn: asyncpg.Connection, a: str, b: str, held: Iterable[tuple[str, str]]) -> None:
    """Remember these records (kind, exchange key) as the pair's set aside, in place of the last run's.
    Another run of the pair at the same time (an operator's beside the scheduled round's, which
    alone take a lock against each other) may have written some of them already: kept, not refused
    (the second to write failed whole on the first's rows)."""
    rows = sorted(set(held))
    await conn.execute("DELETE FROM reconciliation_set_aside WHERE division_a = $1 AND division_b = $2", a, b)
    if rows:
        await conn.execute(
            """INSERT INTO reconciliation_set_aside (division_a, division_b, record_type, record_key)
               SELECT $1, $2, * FROM unnest($3::text[], $4::text[]) ON CONFLICT DO NOTHING""",
            a,
            b,
            [kind for kind, _ in rows],
            [key for _, key in rows],
        )
