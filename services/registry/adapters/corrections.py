"""SQL of corrections. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


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


async def insert_correction(
    conn: asyncpg.Connection,
    jurisdiction: str,
    c: dict[str, Any],
    previous: dict[str, Any],
    source_division: str,
    source_event_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO corrections (id, jurisdiction, corrected_event_id, record_type, record_id, changes,
                                    previous, reason, source_division, source_event_id, event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,coalesce($11::uuid, $10::uuid)) ON CONFLICT DO NOTHING RETURNING true""",
        c["correction_id"],
        jurisdiction,
        c["corrected_event_id"],
        c["record_type"],
        c["record_id"],
        c["changes"],
        previous,
        c["reason"],
        source_division,
        source_event_id,
        event_id,
    )
    return bool(inserted)
