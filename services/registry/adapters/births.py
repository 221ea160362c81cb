"""SQL of births. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg


async def births_of_mother(conn: asyncpg.Connection, jurisdiction: str, mother: str) -> list[asyncpg.Record]:
    return await conn.fetch(  # type: ignore[no-any-return]
        "SELECT * FROM births WHERE jurisdiction = $1 AND mother_id_number = $2 ORDER BY child_birth_date, birth_order",
        jurisdiction,
        mother,
    )


async def birth_by_certificate(
    conn: asyncpg.Connection, jurisdiction: str, number: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM births WHERE jurisdiction = $1 AND medical_certificate_number = $2",
        jurisdiction,
        number,
    )


async def insert_birth(
    conn: asyncpg.Connection,
    jurisdiction: str,
    b: dict[str, Any],
    source_division: str,
    source_event_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
) -> bool:
    """Insert a birth made by ``event_id`` (ours) or by ``source_event_id`` (a counterpart's)."""
    inserted = await conn.fetchval(
        """INSERT INTO births (id, jurisdiction, medical_certificate_number, child_name, child_sex, child_birth_date,
                               child_id_number, mother_id_number, father_id_number, birth_order, birth_division,
                               source_division, source_event_id, event_id, birth_place_kind, birth_institution)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,coalesce($16::uuid, $13::uuid),$14,$15) ON CONFLICT DO NOTHING RETURNING true""",
        b["birth_id"],
        jurisdiction,
        b["medical_certificate_number"],
        b["child_name"],
        b["child_sex"],
        b["child_birth_date"],
        b.get("child_id_number"),
        b["mother_id_number"],
        b.get("father_id_number"),
        b["birth_order"],
        b["birth_division"],
        source_division,
        source_event_id,
        b.get("birth_place_kind"),
        b.get("birth_institution"),
        event_id,
    )
    return bool(inserted)


async def children_birth_dates(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> list[dt.date]:
    rows = await conn.fetch(
        """SELECT child_birth_date FROM births WHERE jurisdiction = $1 AND (mother_id_number = $2 OR father_id_number = $2)
           ORDER BY child_birth_date""",
        jurisdiction,
        id_number,
    )
    return [r["child_birth_date"] for r in rows]
