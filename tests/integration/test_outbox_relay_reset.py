"""The outbox relay after a memory-only broker came back empty, against the real broker.

The relay notices the reset (the broker's incarnation marker changed), holds its publishing
while the other producers' stale writes may still land in the new log, then sends what it had
published within the replay window again. What must hold: everything reaches the new log, and a
backlog that piles up while the reset settles goes out once, not once and again with the
re-send (a day's backlog would otherwise be published, signed and read twice).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from devstack.embedded import Broker
from services.registry.settings import RegistrySettings
from shared.db import create_pool, migrate
from shared.events.catalog import TOPICS
from shared.outbox_relay import OutboxRelay
from tests.helpers import add_outbox_rows

ROOT_MIGRATIONS = "services/registry/migrations"

TOPIC = TOPICS[0]
SERVICE = "relay-reset-test"


@pytest.fixture
async def relay(fresh_db: str, broker: Broker) -> AsyncIterator[OutboxRelay]:
    from pathlib import Path

    await migrate(fresh_db, "registry", Path(__file__).resolve().parents[2] / ROOT_MIGRATIONS)
    settings = RegistrySettings(
        database_url=fresh_db,
        kafka_bootstrap_servers=broker.bootstrap,
        service_name=SERVICE,
        events_record_dir=None,  # its rows are bare ids, not events for the suite's contract check
    )
    pool = await create_pool(fresh_db)
    relay = OutboxRelay(pool, settings)
    running = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await pool.close()


async def _add(dsn: str, n: int) -> list[str]:
    """``n`` rows in the outbox, each an event with an id of its own."""
    return await add_outbox_rows(dsn, n, TOPIC)


async def _all_published(dsn: str, timeout: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(timeout):
            while await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _log(broker: Broker) -> Counter[str]:
    """How often each event id is in the broker's log of the topic, read from its beginning."""
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: Counter[str] = Counter()
    try:
        idle = 0
        while idle < 3:  # three empty fetches of a second in a row: the end of the log
            batch = await consumer.getmany(timeout_ms=1000)
            records = [r for rs in batch.values() for r in rs]
            idle = 0 if records else idle + 1
            seen.update(str(orjson.loads(r.value or b"{}")["id"]) for r in records)
    finally:
        await consumer.stop()
    return seen


def _resets() -> float:
    return REGISTRY.get_sample_value("broker_resets_total", {"service": SERVICE}) or 0.0


async def test_a_backlog_written_while_the_reset_settles_is_published_once(
    relay: OutboxRelay, fresh_db: str, broker: Broker
) -> None:
    before = await _add(fresh_db, 40)
    await _all_published(fresh_db, timeout=30)
    await asyncio.sleep(3)  # the relay's watch has read the broker's incarnation (every 2 s)
    resets = _resets()

    await asyncio.to_thread(broker.kill)
    await asyncio.sleep(2)
    await asyncio.to_thread(broker.start)
    async with asyncio.timeout(30):
        while _resets() == resets:  # the relay saw the new incarnation
            await asyncio.sleep(0.1)
    backlog = await _add(fresh_db, 300)
    await _all_published(fresh_db, timeout=30)

    seen = await _log(broker)
    # What the old broker had is on the new one again, and everything of the backlog is there.
    assert set(before) | set(backlog) <= set(seen), (len(seen), len(before) + len(backlog))
    # Each once: the re-send after the settling took what was published before the reset, and the
    # backlog waited for it instead of going out first and being re-sent with it.
    assert {i: n for i, n in seen.items() if n != 1} == {}
    # One reset, counted once: the new log's first acknowledgements were not taken for another.
    assert _resets() == resets + 1
