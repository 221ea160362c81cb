"""SQL of certificates: our register (issue, revoke) and the copies of certificates other
jurisdictions issued to people we share with them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters.records import set_fields

CHANGEABLE = frozenset({"valid_until", "revoked_on"})  # what the issuer's word may change in a copy


async def next_status_index(conn: asyncpg.Connection, jurisdiction: str) -> int:
    return int(
        await conn.fetchval(
            """INSERT INTO status_counters (jurisdiction, next_index) VALUES ($1, 1)
               ON CONFLICT (jurisdiction) DO UPDATE SET next_index = status_counters.next_index + 1
               RETURNING next_index - 1""",
            jurisdiction,
        )
    )


async def insert_certificate(
    conn: asyncpg.Connection, jurisdiction: str, c: dict[str, Any], event_id: uuid.UUID | None = None
) -> None:
    """Insert a certificate of our register, with the issuance event that made it."""
    await conn.execute(
        """INSERT INTO certificates (number, jurisdiction, holder_id_number, holder_name, marital_status,
                                     children_birth_dates, issued_on, valid_until, key_id, status_index, token, event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)""",
        c["certificate_number"],
        jurisdiction,
        c["holder_id_number"],
        c["holder_name"],
        c["marital_status"],
        c["children_birth_dates"],
        c["issued_on"],
        c["valid_until"],
        c["key_id"],
        c["status_index"],
        c["token"],
        event_id,
    )


async def get_certificate(conn: asyncpg.Connection, number: str, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM certificates WHERE number = $1" + (" FOR UPDATE" if lock else ""), number
    )


async def revoke_certificate(
    conn: asyncpg.Connection, number: str, when: dt.date, reason: str, event_id: uuid.UUID | None = None
) -> bool:
    """Revoke a certificate of our register, with the revocation event that announces it."""
    return bool(
        await conn.fetchval(
            """UPDATE certificates SET revoked_on = $2, revocation_reason = $3, revocation_event_id = $4
               WHERE number = $1 AND revoked_on IS NULL RETURNING true""",
            number,
            when,
            reason,
            event_id,
        )
    )


async def certificates_of(conn: asyncpg.Connection, jurisdiction: str, holder: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT number AS certificate_number, issued_on, valid_until, revoked_on, status_index
           FROM certificates WHERE jurisdiction = $1 AND holder_id_number = $2 ORDER BY issued_on""",
        jurisdiction,
        holder,
    )
    return [dict(r) for r in rows]


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


async def revoke_copy(
    conn: asyncpg.Connection, here: str, number: str, issuer: str, revoked_on: dt.date
) -> bool:
    """Revoke our copy of ``issuer``'s certificate: only the issuer revokes what it issued."""
    return bool(
        await conn.fetchval(
            """UPDATE counterpart_certificates SET revoked_on = $4
               WHERE jurisdiction = $1 AND number = $2 AND issuer = $3 AND revoked_on IS NULL
               RETURNING true""",
            here,
            number,
            issuer,
            revoked_on,
        )
    )


async def update_copy(conn: asyncpg.Connection, here: str, number: str, changes: dict[str, Any]) -> None:
    await set_fields(conn, "counterpart_certificates", "number", here, number, changes, CHANGEABLE)
