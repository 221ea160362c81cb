"""Test kit of the bulk-rebuild property tests: one history applied both ways, the outcomes read.

``both_ways`` applies a history of events through a consumer's handler one event at a time into
one database and through ``EventConsumer.rebuild_from`` into another, each inside a transaction
after emptying the projection, and returns what ``state`` reads from each.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from cli.consumers import apply
from devstack.embedded import EmbeddedPostgres
from shared.consumer import EventConsumer
from shared.db import create_pool, migrate
from shared.events.envelope import Envelope

ConsumerFactory = Callable[[asyncpg.Pool, str], EventConsumer]
StateReader = Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]]


def migrated_pair(pg: EmbeddedPostgres, service: str, migrations: Path) -> tuple[str, str]:
    """Two databases with a service's schema: one for each way of applying."""
    first, second = (pg.create_database(f"{service[:8]}{os.getpid()}_{side}") for side in ("a", "b"))
    for dsn in (first, second):
        asyncio.run(migrate(dsn, service, migrations))
    return first, second


async def both_ways(
    databases: tuple[str, str],
    events: list[Envelope[Any]],
    make_consumer: ConsumerFactory,
    emptied: str,
    state: StateReader,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(event by event, bulk): the state after each way; ``emptied`` lists the tables to truncate."""
    states = []
    for dsn, bulk in zip(databases, (False, True), strict=True):
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            consumer = make_consumer(pool, dsn)
            async with pool.acquire() as conn:
                await conn.execute(f"TRUNCATE {emptied} CASCADE")
                async with conn.transaction():
                    if bulk:
                        await consumer.rebuild_from(conn, iter(events))
                    else:
                        for event in events:
                            await apply(consumer, conn, event)
                states.append(await state(conn))
        finally:
            await pool.close()
    return states[0], states[1]
