"""SQL of marriages and pregnancies. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

# Tables whose rows carry the event that made them; the key column names the record.
_EVENT_TABLES = {
    "persons": "id_number",
    "migrations": "id",
    "marriages": "id",
    "births": "id",
    "pregnancies": "id",
    "certificates": "number",
}


async def set_event_id(
    conn: asyncpg.Connection, table: str, jurisdiction: str, key: object, event_id: uuid.UUID
) -> None:
    """Remember which of our events made a record (a correction names it)."""
    column = _EVENT_TABLES[table]  # whitelisted: never caller text
    await conn.execute(
        f"UPDATE {table} SET event_id = $3 WHERE jurisdiction = $1 AND {column} = $2",
        jurisdiction,
        key,
        event_id,
    )


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
        """SELECT max(m.dissolution_date) FROM marriage_spouses s JOIN marriages m ON m.id = s.marriage_id
           WHERE s.jurisdiction = $1 AND s.id_number = $2""",
        jurisdiction,
        id_number,
    )


async def get_marriage(
    conn: asyncpg.Connection, jurisdiction: str, marriage_id: uuid.UUID, lock: bool = False
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM marriages WHERE jurisdiction = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        jurisdiction,
        marriage_id,
    )


async def insert_marriage(
    conn: asyncpg.Connection,
    jurisdiction: str,
    m: dict[str, Any],
    source_division: str,
    source_event_id: uuid.UUID | None = None,
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO marriages (id, jurisdiction, spouse_a_id_number, spouse_b_id_number, marriage_date,
                                  registered_in, source_division, source_event_id, event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8) ON CONFLICT DO NOTHING RETURNING true""",
        m["marriage_id"],
        jurisdiction,
        m["spouse_a_id_number"],
        m["spouse_b_id_number"],
        m["marriage_date"],
        m["registered_in"],
        source_division,
        source_event_id,
    )
    return bool(inserted)


async def dissolve_marriage(
    conn: asyncpg.Connection, jurisdiction: str, marriage_id: uuid.UUID, when: dt.date, reason: str
) -> bool:
    return bool(
        await conn.fetchval(
            """UPDATE marriages SET dissolution_date = $3, dissolution_reason = $4
               WHERE jurisdiction = $1 AND id = $2 AND dissolution_date IS NULL RETURNING true""",
            jurisdiction,
            marriage_id,
            when,
            reason,
        )
    )


async def marriages_of(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT m.id AS marriage_id, m.spouse_a_id_number, m.spouse_b_id_number, m.marriage_date,
                  m.registered_in, m.dissolution_date, m.dissolution_reason, m.source_division
           FROM marriage_spouses s JOIN marriages m ON m.id = s.marriage_id
           WHERE s.jurisdiction = $1 AND s.id_number = $2 ORDER BY m.marriage_date""",
        jurisdiction,
        id_number,
    )
    return [dict(r) for r in rows]


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
    return await conn.fetchrow(
        "SELECT * FROM pregnancies WHERE jurisdiction = $1 AND id = $2" + (" FOR UPDATE" if lock else ""),
        jurisdiction,
        pregnancy_id,
    )


async def insert_pregnancy(
    conn: asyncpg.Connection,
    jurisdiction: str,
    p: dict[str, Any],
    source_division: str,
    source_event_id: uuid.UUID | None = None,
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO pregnancies (id, jurisdiction, mother_id_number, registered_in, registered_on,
                                    expected_delivery, source_division, source_event_id, event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$8) ON CONFLICT DO NOTHING RETURNING true""",
        p["pregnancy_id"],
        jurisdiction,
        p["mother_id_number"],
        p["registered_in"],
        p["registered_on"],
        p.get("expected_delivery"),
        source_division,
        source_event_id,
    )
    return bool(inserted)


async def close_pregnancy(
    conn: asyncpg.Connection, jurisdiction: str, pregnancy_id: uuid.UUID, when: dt.date, outcome: str
) -> bool:
    return bool(
        await conn.fetchval(
            """UPDATE pregnancies SET closed_on = $3, outcome = $4
               WHERE jurisdiction = $1 AND id = $2 AND closed_on IS NULL RETURNING true""",
            jurisdiction,
            pregnancy_id,
            when,
            outcome,
        )
    )


async def pregnancies_of(conn: asyncpg.Connection, jurisdiction: str, mother: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id AS pregnancy_id, registered_in, registered_on, expected_delivery, closed_on, outcome,
                  source_division
           FROM pregnancies WHERE jurisdiction = $1 AND mother_id_number = $2 ORDER BY registered_on""",
        jurisdiction,
        mother,
    )
    return [dict(r) for r in rows]
