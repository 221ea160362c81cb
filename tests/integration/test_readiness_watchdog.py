"""``/readyz`` and ``consumer_last_progress_seconds`` of a real registry (real PostgreSQL, the real
broker) stay truthful when the consumers' watchdog itself cannot look.

The watchdog (``shared.consumer_health.ConsumerMonitor``) reads every group's recorded positions
from the service's database. A table lock that holds the consumers up holds that read up too: the
consumers cannot record a position, and the watchdog's check waits on the same table (up to the
pool's 30 s statement timeout, then fails, round after round). What ``/readyz`` and the metric say
is the time since progress was last *seen*, so a watchdog that sees nothing reports no progress.
(Recovery once the lock is gone is not waited for here: with a stall period this short, below the
~5-8 s the test broker takes to form a group, every fresh member is replaced before it joins;
``test_consumer_first_batch_stall`` shows a freed consumer applying.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from devstack.embedded import Broker, EmbeddedPostgres
from shared.events.catalog import TOPICS
from shared.kafka import ensure_topics, make_producer
from shared.settings import KafkaSettings
from tests.helpers import in_process_registry

NOTIFICATIONS = "exchange.notification.v1"


def _ready_within(client: TestClient, seconds: float, want: int, measured: bool = False) -> dict[str, Any]:
    """The first /readyz answer with status ``want`` (with ``measured``: once the watchdog has
    measured every consumer's lag)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = client.get("/readyz")
        done = answer.status_code == want and (
            not measured or None not in answer.json()["consumer_lag"].values()
        )
        if done or time.monotonic() > deadline:
            assert answer.status_code == want, str(answer.json())
            body: dict[str, Any] = answer.json()
            return body
        time.sleep(0.2)


def test_consumers_held_up_with_their_watchdog_by_a_table_lock_turn_readiness_not_ready(
    pg: EmbeddedPostgres, broker: Broker
) -> None:
    loop = asyncio.new_event_loop()
    kafka = KafkaSettings(kafka_bootstrap_servers=broker.bootstrap, service_name="watchdog-test")
    loop.run_until_complete(ensure_topics(kafka, list(TOPICS)))
    with in_process_registry(
        pg,
        "watchdog",
        "320412",
        "watchdog-secret",
        kafka_bootstrap_servers=broker.bootstrap,
        run_background=True,
        consumer_check_interval=0.3,
        consumer_stall_seconds=2,
        audit_checkpoint_interval=0,
        retention_interval_seconds=0,
    ) as (client, dsn):
        first = _ready_within(client, 20, 200, measured=True)  # the watchdog sees: caught up
        group = next(iter(first["consumers"]))
        blocker: asyncpg.Connection = loop.run_until_complete(asyncpg.connect(dsn))
        held = blocker.transaction()
        loop.run_until_complete(held.start())
        try:
            loop.run_until_complete(blocker.execute("LOCK TABLE consumer_positions IN ACCESS EXCLUSIVE MODE"))

            async def send() -> None:  # a record for the group to read: it can record no position
                producer = make_producer(kafka)
                await producer.start()
                try:
                    await producer.send_and_wait(NOTIFICATIONS, b"{}", key=b"k")
                finally:
                    await producer.stop()

            loop.run_until_complete(send())
            held_up = _ready_within(client, 8, 503)
            assert held_up["consumers"][group] == "stalled", held_up
            assert held_up["consumer_last_progress_seconds"][group] >= 2, held_up
            assert held_up["database"] == held_up["broker"] == "ok", held_up
            client.get("/metrics")  # the scrape reads the same clock as /readyz
            since = REGISTRY.get_sample_value(
                "consumer_last_progress_seconds", {"service": "registry", "consumer": group}
            )
            assert since is not None and since >= 2
        finally:
            loop.run_until_complete(held.rollback())
            loop.run_until_complete(blocker.close())
    loop.close()
