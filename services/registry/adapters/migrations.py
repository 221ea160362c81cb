"""SQL of moves. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.registry.adapters import records
from services.registry.adapters.records import Made
from services.registry.domain.migrations import Residence


async def residence(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> Residence | None:
    row = await conn.fetchrow(
        """SELECT p.hukou_division, p.residence_division, m.migration_date AS last_move, m.kind, m.to_division
           FROM persons p LEFT JOIN LATERAL (
                SELECT migration_date, kind, to_division FROM migrations m
                 WHERE m.jurisdiction = p.jurisdiction AND m.id_number = p.id_number
                 ORDER BY migration_date DESC, created_at DESC LIMIT 1) m ON true
           WHERE p.jurisdiction = $1 AND p.id_number = $2 FOR UPDATE OF p""",
        jurisdiction,
        id_number,
    )
    if row is None:
        return None
    return Residence(
        row["hukou_division"], row["residence_division"], row["last_move"], row["kind"], row["to_division"]
    )


async def insert_migration(
    conn: asyncpg.Connection,
    jurisdiction: str,
    m: dict[str, Any],
    kind: str,
    made: Made,
) -> bool:
    return await records.insert_once(
        conn,
        "migrations",
        {
            "id": m["migration_id"],
            "jurisdiction": jurisdiction,
            "id_number": m["id_number"],
            "kind": kind,
            "from_division": m["from_division"],
            "to_division": m["to_division"],
            "migration_date": m["migration_date"],
        },
        made,
    )
