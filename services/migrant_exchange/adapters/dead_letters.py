"""SQL of the dead-letter census (every service's dead letters, as read from ``<topic>.dlq``)."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.migrant_exchange.domain.dead_letters import Letter

_COLUMNS = ("id", "service", "consumer", "topic", "reason", "detail", "created_at")


async def record(conn: asyncpg.Connection, letters: list[Letter]) -> None:
    """One row per letter, however often it is read (a re-send, a replay of the topic)."""
    await conn.execute(
        """INSERT INTO dead_letter_census (id, service, consumer, topic, reason, detail, created_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                $7::timestamptz[])
           ON CONFLICT (id) DO NOTHING""",
        *([getattr(x, column) for x in letters] for column in _COLUMNS),  # one array per column
    )


async def counts(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Dead letters by service, topic and reason kind, the most first, with the latest's age."""
    rows = await conn.fetch(
        """SELECT service, topic, reason, count(*)::bigint AS count,
                  extract(epoch FROM now() - max(created_at))::float AS latest_age_s
           FROM dead_letter_census GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3"""
    )
    return [dict(r) for r in rows]
