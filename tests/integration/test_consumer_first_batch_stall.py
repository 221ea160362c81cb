"""A consumer held up in its very first batch is seen stalled (real PostgreSQL, the real broker).

A group that never recorded a position on a partition has no lag by its own record. The watchdog
(``shared.consumer_health.ConsumerMonitor``) asks the broker where the group starts reading there
(the offset it committed, else the log's start), so a member stuck before its first position was
ever saved turns not ready and is replaced like any other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from devstack.embedded import Broker
from shared.consumer import EventConsumer
from shared.consumer_health import ConsumerMonitor
from shared.db import create_pool, migrate
from shared.events.envelope import Envelope
from shared.kafka import ensure_topics, make_producer
from shared.settings import BaseServiceSettings
from tests.corrections_kit import TOPIC, TRUST, signed_correction


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.2)


async def test_a_consumer_held_up_in_its_first_batch_is_stalled_then_applies_once_freed(
    fresh_db: str, broker: Broker, tmp_path: Path
) -> None:
    (tmp_path / "none").mkdir()
    await migrate(fresh_db, "stall_test", tmp_path / "none")
    settings = BaseServiceSettings(
        database_url=fresh_db,
        kafka_bootstrap_servers=broker.bootstrap,
        service_name="stall-test",
        # Longer than the test broker takes to form a group (~8 s): a replaced member must have
        # the time to join again before the next check could call it stalled.
        consumer_stall_seconds=12,
        consumer_check_interval=0.5,
    )
    await ensure_topics(settings, [TOPIC])
    pool = await create_pool(fresh_db, min_size=1, max_size=4)
    applied: list[uuid.UUID] = []

    async def handler(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        applied.append(event.id)

    consumer = EventConsumer(pool, settings, name="first-batch", topics=[TOPIC], handler=handler, trust=TRUST)
    # The inbox is locked before the consumer ever saw a message: its first batch waits on it, and
    # no position of this group is recorded anywhere.
    blocker = await asyncpg.connect(fresh_db)
    lock = blocker.transaction()
    await lock.start()
    await blocker.execute("LOCK TABLE inbox IN SHARE MODE")  # writers wait; readers do not
    event_id, value = signed_correction(1, "typo")
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value, key=b"0" * 32)
    finally:
        await producer.stop()
    monitor = ConsumerMonitor(pool, settings, [consumer])
    running = asyncio.create_task(monitor.run())
    freed = False
    try:
        await _until(lambda: monitor.state(consumer) == "stalled", 60)
        assert monitor.health[id(consumer)].lag == 1  # the one record, read from the log's start
        assert await pool.fetchval("SELECT count(*) FROM consumer_positions") == 0
        await lock.rollback()
        freed = True
        # Freed, the consumer (replaced meanwhile) applies the event and is no longer stalled.
        await _until(lambda: applied == [event_id] and monitor.state(consumer) != "stalled", 60)
        assert await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", event_id) == 1
    finally:
        if not freed:
            await lock.rollback()
        await blocker.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await pool.close()
