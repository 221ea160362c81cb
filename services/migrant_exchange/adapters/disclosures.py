"""SQL of the exchange's part in the subject-access log: REST pick-ups, and checked certificates."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from services.migrant_exchange.domain.routing import Whereabouts


async def mark_fetched(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """Stamp the notifications whose payload is picked up for the first time; returns those."""
    return list(
        await conn.fetch(
            """UPDATE notifications SET fetched_at = now()
               WHERE id = ANY($1::uuid[]) AND fetched_at IS NULL AND payload IS NOT NULL
               RETURNING id, subject, source_division, target_division, event_id, event_type, fetched_at""",
            ids,
        )
    )


async def whereabouts(conn: asyncpg.Connection, subject: str) -> Whereabouts:
    """A subject's origin and residence as the roster has them (no lock: for telling, not routing)."""
    row = await conn.fetchrow(
        "SELECT hukou_division, residence_division FROM roster WHERE subject = $1", subject
    )
    return Whereabouts(row["hukou_division"], row["residence_division"]) if row else Whereabouts(None, None)


async def record_verification(
    conn: asyncpg.Connection,
    disclosure_id: uuid.UUID,
    certificate_number: str,
    issuer: str,
    division: str | None,
    result: str,
    verified_at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO verification_stats (disclosure_id, certificate_number, issuer, division, result, verified_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        disclosure_id,
        certificate_number,
        issuer,
        division,
        result,
        verified_at,
    )
