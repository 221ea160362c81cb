"""SQL of corrections. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from services.registry.adapters import records
from services.registry.adapters.records import Made


async def events_of_record(
    conn: asyncpg.Connection, jurisdiction: str, record_type: str, record_id: str, row: asyncpg.Record
) -> set[uuid.UUID]:
    """The events that made or corrected a record: what a correction may name."""
    known = {e for e in (row.get("event_id"), row.get("source_event_id")) if e is not None}
    rows = await conn.fetch(
        """SELECT event_id, source_event_id FROM corrections
           WHERE jurisdiction = $1 AND record_type = $2 AND record_id = $3""",
        jurisdiction,
        record_type,
        record_id,
    )
    for r in rows:
        known |= {e for e in (r["event_id"], r["source_event_id"]) if e is not None}
    return known


async def get_correction(
    conn: asyncpg.Connection, jurisdiction: str, correction_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM corrections WHERE jurisdiction = $1 AND id = $2", jurisdiction, correction_id
    )


async def insert_correction(
    conn: asyncpg.Connection,
    jurisdiction: str,
    c: dict[str, Any],
    previous: dict[str, Any],
    made: Made,
) -> bool:
    return await records.insert_once(
        conn,
        "corrections",
        {
            "id": c["correction_id"],
            "jurisdiction": jurisdiction,
            "corrected_event_id": c["corrected_event_id"],
            "record_type": c["record_type"],
            "record_id": c["record_id"],
            "changes": c["changes"],
            "previous": previous,
            "reason": c["reason"],
        },
        made,
    )
