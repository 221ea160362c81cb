"""Dead letters of the exchange: list them, and replay one after the cause was fixed.

Callable from the operator CLI as well as from ``python -m services.migrant_exchange dlq``.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.consumer import EventConsumer
from shared.dead_letters import describe_error, replay_dead_letter
from shared.outbox import wake_relay


async def list_dead_letters(
    pool: asyncpg.Pool, include_replayed: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """Dead letters, oldest first, with their reason (values are not shown: they may hold personal data)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT id, consumer, topic, partition, "offset", key, reason, created_at, replayed_at
               FROM dead_letters WHERE $1 OR replayed_at IS NULL ORDER BY id LIMIT $2""",
            include_replayed,
            limit,
        )
    return [dict(r) for r in rows]


async def replay(pool: asyncpg.Pool, consumer: EventConsumer, dead_letter_id: int) -> tuple[bool, str]:
    """Apply one dead letter again through the exchange's consumer (inbox, ordering and all).

    The caller hands in that consumer (``entrypoints.consumer.event_consumer``): it is built where
    the service is composed, and this layer does not reach up for it.
    Returns (applied, message). A letter that still cannot be parsed or applied stays dead.
    """
    try:
        applied = await replay_dead_letter(pool, dead_letter_id, consumer)
    except Exception as e:
        return False, f"still failing: {describe_error(e)}"
    if not applied:
        return False, "no such open dead letter"
    async with pool.acquire() as conn:
        await wake_relay(conn)  # notifications it queued are published without waiting for a poll
    return True, "replayed"
