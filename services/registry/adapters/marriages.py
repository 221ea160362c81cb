"""SQL of marriages. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters import records
from services.registry.adapters.records import Made


async def active_marriage(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM marriage_spouses WHERE jurisdiction = $1 AND id_number = $2 AND active",
            jurisdiction,
            id_number,
        )
    )


async def last_dissolution(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> dt.date | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        """SELECT max(m.dissolution_date)
           FROM marriage_spouses s JOIN marriages m ON m.jurisdiction = s.jurisdiction AND m.id = s.marriage_id
           WHERE s.jurisdiction = $1 AND s.id_number = $2""",
        jurisdiction,
        id_number,
    )


async def get_marriage(
    conn: asyncpg.Connection, jurisdiction: str, marriage_id: uuid.UUID, lock: bool = False
) -> asyncpg.Record | None:
    return await records.get_by_key(conn, jurisdiction, "marriage", marriage_id, lock=lock)


async def insert_marriage(
    conn: asyncpg.Connection,
    jurisdiction: str,
    m: dict[str, Any],
    made: Made,
) -> bool:
    return await records.insert_once(
        conn,
        "marriages",
        {
            "id": m["marriage_id"],
            "jurisdiction": jurisdiction,
            "spouse_a_id_number": m["spouse_a_id_number"],
            "spouse_b_id_number": m["spouse_b_id_number"],
            "marriage_date": m["marriage_date"],
            "registered_in": m["registered_in"],
        },
        made,
    )


async def dissolve_marriage(
    conn: asyncpg.Connection,
    jurisdiction: str,
    marriage_id: uuid.UUID,
    when: dt.date,
    reason: str,
    by: str,
) -> bool:
    """Record the marriage's end, told by ``by`` (this jurisdiction, or the counterpart that told
    it): ``records.delete_counterpart_records`` keeps a counterpart's marriage we ended."""
    return bool(
        await conn.fetchval(
            """UPDATE marriages SET dissolution_date = $3, dissolution_reason = $4, ended_by = $5
               WHERE jurisdiction = $1 AND id = $2 AND dissolution_date IS NULL RETURNING true""",
            jurisdiction,
            marriage_id,
            when,
            reason,
            by,
        )
    )


async def marriages_of(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT m.id AS marriage_id, m.spouse_a_id_number, m.spouse_b_id_number, m.marriage_date,
                  m.registered_in, m.dissolution_date, m.dissolution_reason, m.source_division
           FROM marriage_spouses s JOIN marriages m ON m.jurisdiction = s.jurisdiction AND m.id = s.marriage_id
           WHERE s.jurisdiction = $1 AND s.id_number = $2 ORDER BY m.marriage_date""",
        jurisdiction,
        id_number,
    )
    return [dict(r) for r in rows]


async def marital_status(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> str:
    row = await conn.fetchrow(
        """SELECT dissolution_date, dissolution_reason FROM marriages
           WHERE jurisdiction = $1 AND (spouse_a_id_number = $2 OR spouse_b_id_number = $2)
           ORDER BY marriage_date DESC LIMIT 1""",
        jurisdiction,
        id_number,
    )
    if row is None:
        return "unmarried"
    if row["dissolution_date"] is None:
        return "married"
    return "widowed" if row["dissolution_reason"] == "death" else "divorced"
