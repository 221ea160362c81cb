"""SQL of the verification read model."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def get_certificate(conn: asyncpg.Connection | asyncpg.Pool, number: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM certificates WHERE number = $1", number)
    return dict(row) if row else None


async def upsert_issued(
    conn: asyncpg.Connection, d: dict[str, Any], holder_subject: str, event_id: uuid.UUID
) -> None:
    await conn.execute(
        """INSERT INTO certificates (number, issuer, holder_subject, holder_name, marital_status, children_count,
                                     issued_on, valid_until, key_id, status_index, token, source_event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (number) DO NOTHING""",
        d["certificate_number"],
        d["issuer"],
        holder_subject,
        d["holder_name"],
        d["marital_status"],
        len(d["children_birth_dates"]),
        d["issued_on"],
        d["valid_until"],
        d["key_id"],
        d["status_index"],
        d["token"],
        event_id,
    )


async def mark_revoked(conn: asyncpg.Connection, number: str, revoked_on: Any, reason: str) -> None:
    await conn.execute(
        """UPDATE certificates SET revoked_on = $2, revocation_reason = $3, updated_at = now()
           WHERE number = $1 AND revoked_on IS NULL""",
        number,
        revoked_on,
        reason,
    )
