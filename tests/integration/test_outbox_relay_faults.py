"""The outbox relay under faults that reach it alone, against the real PostgreSQL and broker.

What each test holds the relay to (docs/reliability.md, "The relay's own faults"):

1. A relay stopped (SIGKILL, SIGTERM, lost leadership) in the 5 s it waits after seeing the broker
   come back empty leaves the re-send to its successor: ``relay_state`` names the new broker log
   only from the transaction that queues the recent rows again, so the next relay finds it
   naming the old log and sends them.
2. The relay lock is held by a connection of its own: when that connection dies the lock is free,
   another replica takes it, and the relay that held it stops publishing and stands by.
3. A row the producer refuses for good (a dead letter of a message over the producer's 1 MiB
   ``max_request_size``) is set aside, counted and measured, and the rows after it are published.
4. Every replica measures the outbox: while the lock is held by a session that does not publish,
   a standby still reports the oldest row's age (OutboxNotDraining), and ``/readyz`` says not
   ready once that age passes ``OUTBOX_STALL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY

from devstack.embedded import Broker, EmbeddedPostgres
from services.registry.settings import RegistrySettings
from shared.db import create_pool, migrate
from shared.events.catalog import DLQ_SUFFIX, TOPICS
from shared.outbox_relay import OutboxRelay
from shared.relay_lock import RELAY_LOCK
from tests.helpers import add_outbox_rows, in_process_registry

MIGRATIONS = Path(__file__).resolve().parents[2] / "services/registry/migrations"
TOPIC = TOPICS[0]


def _settings(dsn: str, broker: Broker, service: str) -> RegistrySettings:
    return RegistrySettings(
        database_url=dsn,
        kafka_bootstrap_servers=broker.bootstrap,
        service_name=service,
        events_record_dir=None,
    )


class _Relays:
    """Relays started and stopped by the test, each with a pool of its own (one per process)."""

    def __init__(self, dsn: str, broker: Broker):
        self.dsn, self.broker = dsn, broker
        self.running: list[tuple[asyncio.Task[None], asyncpg.Pool]] = []

    async def start(self, service: str) -> tuple[OutboxRelay, asyncio.Task[None]]:
        pool = await create_pool(self.dsn)
        relay = OutboxRelay(pool, _settings(self.dsn, self.broker, service))
        task = asyncio.create_task(relay.run())
        self.running.append((task, pool))
        return relay, task

    async def close(self) -> None:
        for task, pool in self.running:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pool.close()


@pytest.fixture
async def relays(fresh_db: str, broker: Broker) -> AsyncIterator[_Relays]:
    await migrate(fresh_db, "registry", MIGRATIONS)
    r = _Relays(fresh_db, broker)
    try:
        yield r
    finally:
        await r.close()


async def _add(dsn: str, n: int, topic: str = TOPIC) -> list[str]:
    return await add_outbox_rows(dsn, n, topic)


async def _unpublished(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
    finally:
        await conn.close()


async def _all_published(dsn: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await _unpublished(dsn):
            await asyncio.sleep(0.1)


async def _log(broker: Broker) -> Counter[str]:
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: Counter[str] = Counter()
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=1000)
            records = [r for rs in batch.values() for r in rs]
            idle = 0 if records else idle + 1
            seen.update(str(orjson.loads(r.value or b"{}")["id"]) for r in records)
    finally:
        await consumer.stop()
    return seen


def _resets(service: str) -> float:
    return REGISTRY.get_sample_value("broker_resets_total", {"service": service}) or 0.0


async def test_a_relay_stopped_while_a_broker_reset_settles_loses_no_event(
    relays: _Relays, fresh_db: str, broker: Broker
) -> None:
    _, running = await relays.start("relay-reset-a")
    before = await _add(fresh_db, 40)
    await _all_published(fresh_db, timeout=30)
    await asyncio.sleep(3)  # the watch has read the broker's incarnation
    resets = _resets("relay-reset-a")

    await asyncio.to_thread(broker.kill)  # the memory-only broker loses the 40 events
    await asyncio.sleep(2)
    await asyncio.to_thread(broker.start)
    async with asyncio.timeout(30):
        while _resets("relay-reset-a") == resets:  # the relay saw the reset
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    # The process ends inside the 5 s settle (a deploy, a crash, the pod rescheduled).
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)

    await relays.start("relay-reset-b")  # its successor on the same database
    await asyncio.sleep(12)  # more than the settle time and a few polls
    await _all_published(fresh_db, timeout=30)

    seen = await _log(broker)
    missing = set(before) - set(seen)
    assert not missing, f"{len(missing)} of {len(before)} events the old broker lost were never re-sent"


async def test_a_relay_that_lost_its_lock_connection_stops_publishing(
    relays: _Relays, fresh_db: str, broker: Broker
) -> None:
    a, _ = await relays.start("relay-lock-a")
    async with asyncio.timeout(15):
        while not a.leader:
            await asyncio.sleep(0.1)
    b, _ = await relays.start("relay-lock-b")
    await asyncio.sleep(3)
    assert not b.leader

    admin = await asyncpg.connect(fresh_db)
    try:
        # The lock holder's connection dies alone (idle_session_timeout, a proxy, a network blip,
        # pg_terminate_backend by an operator): PostgreSQL releases the session's advisory lock.
        holder = await admin.fetchval(
            """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND ((classid::bigint << 32) | objid::bigint) = $1""",
            RELAY_LOCK,
        )
        assert holder is not None
        await admin.fetchval("SELECT pg_terminate_backend($1)", holder)
    finally:
        await admin.close()

    async with asyncio.timeout(10):
        while not b.leader:
            await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    # One relay per database publishes (per-subject order); the old one must have stepped down.
    assert not (a.leader and b.leader), "two relays publish the same outbox at once"


async def test_one_oversized_outbox_row_does_not_block_the_rows_after_it(
    relays: _Relays, fresh_db: str, broker: Broker
) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        # A dead letter of a large hostile message: kept as it arrived (shared.dead_letters.keep).
        await conn.execute(
            """INSERT INTO outbox (event_id, event_type, topic, key, value, headers)
               VALUES ($1, 'raw', $2, '', $3, '{"dlq_reason": "unparseable"}'::jsonb)""",
            uuid.uuid4(),
            TOPIC + DLQ_SUFFIX,
            b"x" * (1024 * 1024 + 100),
        )
    finally:
        await conn.close()
    after = await _add(fresh_db, 5)
    await relays.start("relay-oversized")
    await asyncio.sleep(15)
    conn = await asyncpg.connect(fresh_db)
    try:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND event_id = ANY($1::uuid[])",
            after,
        )
        refused = await conn.fetch("SELECT refused_reason FROM outbox WHERE refused_at IS NOT NULL")
    finally:
        await conn.close()
    assert waiting == 0, f"{waiting} ordinary events held behind one row the producer refuses"
    assert [r["refused_reason"] for r in refused] == ["MessageSizeTooLargeError"]  # set aside, kept
    counted = {"service": "relay-oversized", "reason": "MessageSizeTooLargeError"}
    assert REGISTRY.get_sample_value("outbox_refused_total", counted) == 1.0
    # OutboxRowsRefused reads it; the refused row does not count as waiting (OutboxNotDraining).
    assert REGISTRY.get_sample_value("outbox_refused_rows", {"service": "relay-oversized"}) == 1.0
    assert REGISTRY.get_sample_value("outbox_backlog", {"service": "relay-oversized"}) == 0.0


async def test_the_outbox_age_is_reported_while_no_relay_publishes(
    relays: _Relays, fresh_db: str, broker: Broker
) -> None:
    zombie = await asyncpg.connect(fresh_db)  # e.g. a partitioned leader's session, not yet reaped
    try:
        await zombie.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK)
        conn = await asyncpg.connect(fresh_db)
        try:
            await conn.execute(
                """INSERT INTO outbox (event_id, event_type, topic, key, value, created_at)
                   VALUES ($1, 'test.relayed.v1', $2, 'k', '{}', now() - interval '5 minutes')""",
                uuid.uuid4(),
                TOPIC,
            )
        finally:
            await conn.close()
        relay, _ = await relays.start("relay-standby")
        await asyncio.sleep(6)
        assert not relay.leader
        age = REGISTRY.get_sample_value("outbox_oldest_age_seconds", {"service": "relay-standby"})
        # OutboxNotDraining (deploy/prometheus/alerts.yaml) reads this gauge and nothing else.
        assert age is not None and age > 60, (
            f"outbox_oldest_age_seconds = {age} with a 5-minute-old row waiting"
        )
    finally:
        await zombie.close()


def test_readiness_says_not_ready_while_the_oldest_event_waits_too_long(
    pg: EmbeddedPostgres, broker: Broker
) -> None:
    """Whichever replica relays, or none: every replica's /readyz tells the outbox does not drain."""
    with in_process_registry(
        pg,
        "stall",
        "320412",
        "outbox-stall-secret",
        kafka_bootstrap_servers=broker.bootstrap,
        outbox_stall_seconds=60,
    ) as (client, dsn):

        async def add(age: float) -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(
                    """INSERT INTO outbox (event_id, event_type, topic, key, value, created_at)
                       VALUES ($1, 'test.relayed.v1', $2, 'k', '{}', now() - make_interval(secs => $3))""",
                    uuid.uuid4(),
                    TOPIC,
                    age,
                )
            finally:
                await conn.close()

        asyncio.run(add(30))
        young = client.get("/readyz")
        assert young.status_code == 200, young.json()
        assert young.json()["outbox"] == "ok"

        asyncio.run(add(300))
        old = client.get("/readyz")
        assert old.status_code == 503, old.json()
        assert old.json()["outbox"].startswith("stalled"), old.json()
        assert old.json()["outbox_oldest_age_seconds"] > 60
        assert old.json()["database"] == old.json()["broker"] == "ok"
