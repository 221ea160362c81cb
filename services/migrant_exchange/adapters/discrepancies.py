"""SQL of discrepancy cases: opened by reconciliation or by an unfilled sequence gap."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def open_case(conn: asyncpg.Connection, case: dict[str, Any]) -> uuid.UUID | None:
    """Open a case unless the same difference is already open; returns the new case's id."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """INSERT INTO discrepancies (id, kind, division_a, division_b, subject, record_kind, record_key,
                                      missing_at, duplicated_at, fields, detail, reconciliation_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
           ON CONFLICT (kind, division_a, division_b, subject, record_key) WHERE state = 'open' DO NOTHING
           RETURNING id""",
        uuid.uuid4(),
        case["kind"],
        case["division_a"],
        case["division_b"],
        case["subject"],
        case["record_kind"],
        case["record_key"],
        case.get("missing_at"),
        case.get("duplicated_at"),
        list(case.get("fields") or []),
        case.get("detail") or {},
        case.get("reconciliation_id"),
    )


async def clear_not_found(
    conn: asyncpg.Connection, a: str, b: str, found: list[tuple[str, str, str]], run_id: uuid.UUID
) -> int:
    """Resolve the open reconciliation cases of a pair that this run no longer finds."""
    result = await conn.execute(
        """UPDATE discrepancies d SET state = 'resolved', resolved_at = now(),
                  resolution = jsonb_build_object('action', 'cleared', 'reconciliation_id', $4::text)
           WHERE d.state = 'open' AND d.division_a = $1 AND d.division_b = $2
             AND d.kind IN ('missing', 'field_conflict', 'duplicate')
             AND (d.kind, d.subject, d.record_key) NOT IN (
                 SELECT * FROM unnest($3::text[], $5::text[], $6::text[]))""",
        a,
        b,
        [f[0] for f in found],
        str(run_id),
        [f[1] for f in found],
        [f[2] for f in found],
    )
    return int(result.split()[-1])


async def list_cases(
    conn: asyncpg.Connection,
    state: str | None,
    kind: str | None,
    jurisdiction: str | None,
    reconciliation_id: uuid.UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT * FROM discrepancies
           WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2)
             AND ($3::text IS NULL OR division_a = $3 OR division_b = $3)
             AND ($4::uuid IS NULL OR reconciliation_id = $4)
           ORDER BY created_at, id LIMIT $5""",
        state,
        kind,
        jurisdiction,
        reconciliation_id,
        limit,
    )
    return rows


async def get_case(conn: asyncpg.Connection, case_id: uuid.UUID, lock: bool = False) -> asyncpg.Record | None:
    sql = "SELECT * FROM discrepancies WHERE id = $1" + (" FOR UPDATE" if lock else "")
    return await conn.fetchrow(sql, case_id)


async def resolve_case(conn: asyncpg.Connection, case_id: uuid.UUID, resolution: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE discrepancies SET state = 'resolved', resolved_at = now(), resolution = $2 WHERE id = $1",
        case_id,
        resolution,
    )
