"""The transactional outbox, publishing side: the relay, the only thing that talks to the producer.

It wakes on NOTIFY (``shared.outbox.wake_relay``) or polls, publishes unpublished rows in id
order, signed per source, and marks them published. One replica per database relays (an advisory
lock held by a connection of its own, checked before every batch; the others stand by). When the
broker is down it backs off and retries; when a memory-only broker comes back empty it recreates
the topics and re-sends what was published recently, because that may have been lost with the
broker (consumers are idempotent). A row the producer refuses for good (too large) is set aside,
counted and alerted on, and the rows after it go on. Every replica, leader or not, measures the
outbox (backlog, oldest row's age) for its gauges.

Here: the publish loop, its backoff, signing and setting rows aside. The relay's other parts
live beside it: the lock (``shared.relay_lock``), the repair after a broker reset
(``shared.relay_reset``, inherited) and the measure of the outbox (``shared.outbox_measure``,
inherited).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.events.catalog import DLQ_SUFFIX
from shared.events.recording import EventTap
from shared.events.signature import sign_outgoing_batch
from shared.kafka import REFUSED_FOR_GOOD, ensure_topics, make_producer, send_all
from shared.observability import (
    EVENTS_PRODUCED,
    EVENTS_UNSIGNED_PUBLISHED,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_REFUSED,
)
from shared.outbox_measure import OutboxGauges
from shared.relay_lock import STAND_BACK_SECONDS, LeadershipLost, RelayLock
from shared.relay_reset import BrokerResetRecovery
from shared.sensitivity import neutral_label  # metric labels name no sensitive type
from shared.settings import BaseServiceSettings
from shared.trust import Keyring, load_keyring

log = logging.getLogger(__name__)

_ACK_TIMEOUT = 30.0  # seconds to wait for the broker to acknowledge one batch
_BACKOFF_FIRST, _BACKOFF_MAX = 0.2, 5.0  # seconds between attempts while the broker refuses


class OutboxRelay(BrokerResetRecovery, OutboxGauges):
    """Publishes the outbox of one database, in order, for as long as it runs."""

    def __init__(self, pool: asyncpg.Pool, settings: BaseServiceSettings):
        self.pool = pool
        self.settings = settings
        self.service = settings.service_name
        self._wake = asyncio.Event()
        self.connected = False
        self.last_error: str | None = None
        # The highest offset the broker acknowledged per partition. A partition's log only grows,
        # so an acknowledgement at or below it means the broker restarted without its log.
        self._acked: dict[tuple[str, int], int] = {}
        self._incarnation: str | None = None
        # A batch in flight and a re-send must not interleave: a batch sent to the empty broker
        # before its topics were recreated, and acknowledged into nowhere, would otherwise be
        # marked published after the re-send had put it back in the queue.
        self._sending = asyncio.Lock()
        self._resend_again: asyncio.Task[None] | None = None
        # The broker log the pending re-send is for: stored in relay_state by the transaction
        # that queues the recent rows again, never before (a relay stopped in between would
        # leave its successor nothing to re-send).
        self._resend_for: str | None = None
        self._settling = False  # a reset was seen and has not settled: publish nothing yet
        self.leader = False  # holds the relay lock: the one replica that publishes
        self._lock = RelayLock(settings.database_url, self._lock_connection_closed)
        self._backoff = _BACKOFF_FIRST
        # Called when the broker came back empty (consumers of this process restart).
        self.reset_listeners: list[Callable[[], None]] = []
        self.keyring = load_keyring(settings.event_keys_file) if settings.event_keys_file else Keyring()
        production = settings.environment == "production"
        self.tap = EventTap(None if production else settings.events_record_dir, settings.service_name)

    async def run(self) -> None:
        """Hold the relay lock, then publish until cancelled.

        Every replica watches the broker, the standbys too: a broker that came back empty must
        restart every process's consumers, while only the leader re-sends the outbox. Every
        replica measures the outbox too, so its age is reported while no relay publishes."""
        watch = asyncio.create_task(self._watch_broker(), name="broker-watch")
        measure = asyncio.create_task(self._measure_forever(), name="outbox-measure")
        try:
            while True:
                try:
                    await self._run_as_leader()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # keep relaying through any outage
                    self.connected = False
                    self.last_error = type(e).__name__
                    log.warning("outbox relay restarting", extra={"error": type(e).__name__})
                    await asyncio.sleep(1.0)
        finally:
            watch.cancel()
            measure.cancel()
            self._abandon_resend()

    async def _run_as_leader(self) -> None:
        """Contend for the relay lock, then publish for as long as this replica holds it."""
        lost = False
        try:
            await self._lock.hold(on_notify=self._wake.set)
            self.leader = True
            await self._publish_loop()
        except LeadershipLost as e:
            lost, self.connected, self.last_error = True, False, type(e).__name__
            log.error(
                "relay lock lost; publishing stopped, contending for the lock again",
                extra={"error": str(e), "after_seconds": STAND_BACK_SECONDS},
            )
        finally:
            self.leader = False
            # A re-send this leader scheduled is its successor's now (relay_state still names the
            # old log, so whoever takes the lock re-sends); queued from here it would be twice.
            self._abandon_resend()
            await self._lock.release()
        if lost:
            await asyncio.sleep(STAND_BACK_SECONDS)

    def _lock_connection_closed(self) -> None:
        """The lock's session ended, and the lock with it: another replica may take it. Stop
        calling this one the leader at once; the publish loop stops before its next batch."""
        self.leader = False
        self._wake.set()

    async def _check_leadership(self) -> None:
        if not self.leader:
            raise LeadershipLost("the relay lock's connection is closed")
        try:
            await self._lock.check()
        except LeadershipLost:
            self.leader = False
            raise

    async def _publish_loop(self) -> None:
        self._backoff = _BACKOFF_FIRST
        while True:
            await self._check_leadership()
            producer = make_producer(self.settings)
            try:
                await producer.start()
                await ensure_topics(self.settings)
                await self._catch_up_on_resets()
                self.connected = True
                await self._drain_forever(producer)
            except (TimeoutError, KafkaError, OSError) as e:
                self.connected = False
                self.last_error = type(e).__name__
                OUTBOX_PUBLISH_FAILURES.labels(self.service).inc()
                log.warning(
                    "broker unavailable, outbox keeps the events",
                    extra={"error": type(e).__name__, "retry_in_seconds": self._backoff},
                )
                with contextlib.suppress(Exception):
                    await self._refresh_gauges()
                await asyncio.sleep(self._backoff)
                # A producer that starts is no sign the broker takes the events: the backoff is
                # reset only by a batch that went through (``_drain_forever``).
                self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
            finally:
                with contextlib.suppress(Exception):
                    await producer.stop()

    async def _drain_forever(self, producer: AIOKafkaProducer) -> None:
        while True:
            await self._check_leadership()
            handled = await self.publish_batch(producer)
            self._backoff = _BACKOFF_FIRST  # the batch went through (or there was nothing to send)
            if handled == 0:
                await self._refresh_gauges()
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.outbox_poll_interval)

    async def publish_batch(self, producer: AIOKafkaProducer) -> int:
        """Send the oldest unpublished rows and mark those the broker acknowledged, and those the
        producer refused for good as set aside; how many of the rows no longer wait."""
        async with self._sending:
            if self._settling:
                return 0  # the re-send after the settling wakes the loop
            return await self._publish_batch(producer)

    async def _publish_batch(self, producer: AIOKafkaProducer) -> int:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT id, event_id, topic, key, value, headers FROM outbox
                   WHERE published_at IS NULL AND refused_at IS NULL ORDER BY id LIMIT $1""",
                self.settings.outbox_batch_size,
            )
        if not rows:
            return 0
        values = self.signed([(row["topic"], bytes(row["value"])) for row in rows], dt.datetime.now(dt.UTC))
        futures = await send_all(
            producer,
            [
                (
                    row["topic"],
                    row["key"].encode() or None,
                    value,
                    [(k, str(v).encode()) for k, v in row["headers"].items()],
                )
                for row, value in zip(rows, values, strict=True)
            ],
        )
        # aiokafka retries some broker answers for as long as they come back; a memory-only broker
        # that lost a topic can answer so for ever. Bound the wait and start over with a new producer.
        # Each record batch answers once, for all its messages.
        batches = list(dict.fromkeys(futures))
        answers = dict(
            zip(
                batches,
                await asyncio.wait_for(asyncio.gather(*batches, return_exceptions=True), _ACK_TIMEOUT),
                strict=True,
            )
        )
        results = [answers[f] for f in futures]
        # A refusal answered for a record batch of several rows names none of them: retried.
        alone = Counter(futures)
        refused = [
            (row, r)
            for row, future, r in zip(rows, futures, results, strict=True)
            if isinstance(r, REFUSED_FOR_GOOD) and alone[future] == 1
        ]
        if refused:
            await self._set_aside(refused)
        done = [row["id"] for row, r in zip(rows, results, strict=True) if not isinstance(r, BaseException)]
        if done:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", done
                )
            for topic, n in Counter(
                row["topic"] for row, r in zip(rows, results, strict=True) if not isinstance(r, BaseException)
            ).items():
                EVENTS_PRODUCED.labels(self.service, neutral_label(topic)).inc(n)
            self.tap.write(
                v
                for row, v, r in zip(rows, values, results, strict=True)
                if not isinstance(r, BaseException) and not row["topic"].endswith(DLQ_SUFFIX)
            )
        if self._log_went_back([r for r in answers.values() if not isinstance(r, BaseException)]):
            # A broker that came back empty may even acknowledge writes to topics it no longer
            # has; what it acknowledged since (and before) may be gone. Recreate and re-send.
            await self.recover_broker_reset()
        set_aside = {row["id"] for row, _ in refused}
        failed = next(
            (
                r
                for row, r in zip(rows, results, strict=True)
                if isinstance(r, BaseException) and row["id"] not in set_aside
            ),
            None,
        )
        if failed is not None:
            raise failed if isinstance(failed, KafkaError | OSError) else KafkaError(str(failed))
        return len(done) + len(set_aside)

    async def _set_aside(self, refused: list[tuple[asyncpg.Record, BaseException]]) -> None:
        """Mark rows the producer refused for good so that no batch picks them again, and say so
        without their content (a dead letter's bytes are someone else's, an event's are personal)."""
        async with self.pool.acquire() as conn:
            await conn.executemany(
                "UPDATE outbox SET refused_at = now(), refused_reason = $2 WHERE id = $1",
                [(row["id"], type(error).__name__) for row, error in refused],
            )
        for row, error in refused:
            OUTBOX_REFUSED.labels(self.service, type(error).__name__).inc()
            log.error(
                "outbox row refused by the producer for good; set aside, the rows after it go on",
                extra={
                    "outbox_id": row["id"],
                    "event_id": str(row["event_id"]),
                    "topic": neutral_label(row["topic"]),
                    "bytes": len(row["value"]),
                    "error": type(error).__name__,
                },
            )

    def signed(self, rows: list[tuple[str, bytes]], now: dt.datetime) -> list[bytes]:
        """The events as published, signed with their sources' keys, one signature per source
        for the whole batch (see ``sign_outgoing_batch`` for why here). Dead letters keep the
        bytes they arrived with: someone else's events."""
        own = [i for i, (topic, _) in enumerate(rows) if not topic.endswith(DLQ_SUFFIX)]
        signed = sign_outgoing_batch(self.keyring, [rows[i][1] for i in own], now)
        values = [value for _, value in rows]
        for i, value in zip(own, signed, strict=True):
            if value is None:
                # Consumers refuse it (and count it); holding it back would stall every later row.
                EVENTS_UNSIGNED_PUBLISHED.labels(self.service).inc()
                log.error(
                    "no event-signing key for this source; published unsigned", extra={"topic": rows[i][0]}
                )
            else:
                values[i] = value
        return values
