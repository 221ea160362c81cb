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


Verified = tuple[uuid.UUID, str, str, str | None, str, dt.datetime]


async def record_verifications(conn: asyncpg.Connection, checks: list[Verified]) -> None:
    """Certificate checks, each once: (disclosure id, certificate number, issuer, the checking
    client's division, verdict, time)."""
    await conn.execute(
        """INSERT INTO verification_stats (disclosure_id, certificate_number, issuer, division, result, verified_at)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
           ON CONFLICT DO NOTHING""",
        *(list(column) for column in zip(*checks, strict=True)),
    )
