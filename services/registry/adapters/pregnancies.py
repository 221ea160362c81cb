"""SQL of pregnancy records. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters import records
from services.registry.adapters.records import Made


async def open_pregnancy(
    conn: asyncpg.Connection, jurisdiction: str, mother: str, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM pregnancies WHERE jurisdiction = $1 AND mother_id_number = $2 AND closed_on IS NULL"
        + (" FOR UPDATE" if lock else ""),
        jurisdiction,
        mother,
    )


async def get_pregnancy(
    conn: asyncpg.Connection, jurisdiction: str, pregnancy_id: uuid.UUID, lock: bool = False
) -> asyncpg.Record | None:
    return await records.get_by_key(conn, jurisdiction, "pregnancy", pregnancy_id, lock=lock)


async def insert_pregnancy(
    conn: asyncpg.Connection,
    jurisdiction: str,
    p: dict[str, Any],
    made: Made,
) -> bool:
    return await records.insert_once(
        conn,
        "pregnancies",
        {
            "id": p["pregnancy_id"],
            "jurisdiction": jurisdiction,
            "mother_id_number": p["mother_id_number"],
            "registered_in": p["registered_in"],
            "registered_on": p["registered_on"],
            "expected_delivery": p.get("expected_delivery"),
            "shared_with": p.get("shared_with", []),
        },
        made,
    )


async def close_pregnancy(
    conn: asyncpg.Connection,
    jurisdiction: str,
    pregnancy_id: uuid.UUID,
    when: dt.date,
    outcome: str,
    by: str,
) -> bool:
    """Record the pregnancy's closure, told by ``by`` (this jurisdiction, or the counterpart that
    told it): ``records.delete_counterpart_records`` keeps a counterpart's pregnancy we closed."""
    return bool(
        await conn.fetchval(
            """UPDATE pregnancies SET closed_on = $3, outcome = $4, ended_by = $5
               WHERE jurisdiction = $1 AND id = $2 AND closed_on IS NULL RETURNING true""",
            jurisdiction,
            pregnancy_id,
            when,
            outcome,
            by,
        )
    )


async def pregnancies_of(conn: asyncpg.Connection, jurisdiction: str, mother: str) -> list[dict[str, Any]]:
    """The mother's pregnancy records here, each with who else holds it (``shared_with``, and the
    sender of a copy, ``source_division``)."""
    rows = await conn.fetch(
        """SELECT id AS pregnancy_id, registered_in, registered_on, expected_delivery, closed_on, outcome,
                  source_division, shared_with
           FROM pregnancies WHERE jurisdiction = $1 AND mother_id_number = $2 ORDER BY registered_on""",
        jurisdiction,
        mother,
    )
    return [dict(r) for r in rows]
