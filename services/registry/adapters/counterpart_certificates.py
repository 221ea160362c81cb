"""SQL of the copies of certificates other jurisdictions issued to people we share with them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters.records import set_fields

CHANGEABLE = frozenset({"valid_until", "revoked_on"})  # what the issuer's word may change in a copy


async def get_copy(conn: asyncpg.Connection, here: str, number: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM counterpart_certificates WHERE jurisdiction = $1 AND number = $2 FOR UPDATE",
        here,
        number,
    )


async def insert_copy(
    conn: asyncpg.Connection, here: str, c: dict[str, Any], source: str, source_event_id: uuid.UUID | None
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO counterpart_certificates (jurisdiction, number, holder_id_number, issuer, issued_on,
                                                 valid_until, revoked_on, source_division, source_event_id, event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9) ON CONFLICT DO NOTHING RETURNING true""",
        here,
        c["certificate_number"],
        c["holder_id_number"],
        c["issuer"],
        c["issued_on"],
        c["valid_until"],
        c.get("revoked_on"),
        source,
        source_event_id,
    )
    return bool(inserted)


async def revoke_copy(conn: asyncpg.Connection, here: str, number: str, revoked_on: dt.date) -> bool:
    return bool(
        await conn.fetchval(
            """UPDATE counterpart_certificates SET revoked_on = $3
               WHERE jurisdiction = $1 AND number = $2 AND revoked_on IS NULL RETURNING true""",
            here,
            number,
            revoked_on,
        )
    )


async def update_copy(conn: asyncpg.Connection, here: str, number: str, changes: dict[str, Any]) -> None:
    await set_fields(conn, "counterpart_certificates", "number", here, number, changes, CHANGEABLE)
