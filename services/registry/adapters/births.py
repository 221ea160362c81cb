"""SQL of births. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters import records
from services.registry.adapters.records import Made


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


async def birth_by_key(
    conn: asyncpg.Connection, jurisdiction: str, birth_id: uuid.UUID
) -> asyncpg.Record | None:
    return await records.get_by_key(conn, jurisdiction, "birth", birth_id)


async def insert_birth(
    conn: asyncpg.Connection,
    jurisdiction: str,
    b: dict[str, Any],
    made: Made,
) -> bool:
    """Insert a birth made by ``event_id`` (ours) or by ``source_event_id`` (a counterpart's)."""
    return await records.insert_once(
        conn,
        "births",
        {
            "id": b["birth_id"],
            "jurisdiction": jurisdiction,
            "medical_certificate_number": b["medical_certificate_number"],
            "child_name": b["child_name"],
            "child_sex": b["child_sex"],
            "child_birth_date": b["child_birth_date"],
            "child_id_number": b.get("child_id_number"),
            "mother_id_number": b["mother_id_number"],
            "father_id_number": b.get("father_id_number"),
            "birth_order": b["birth_order"],
            "birth_division": b["birth_division"],
            "birth_place_kind": b.get("birth_place_kind"),
            "birth_institution": b.get("birth_institution"),
        },
        made,
    )


async def children_birth_dates(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> list[dt.date]:
    rows = await conn.fetch(
        """SELECT child_birth_date FROM births WHERE jurisdiction = $1 AND (mother_id_number = $2 OR father_id_number = $2)
           ORDER BY child_birth_date""",
        jurisdiction,
        id_number,
    )
    return [r["child_birth_date"] for r in rows]
