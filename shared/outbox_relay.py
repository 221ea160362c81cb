"""The transactional outbox, publishing side: the relay, the only thing that talks to the producer.

It wakes on NOTIFY (``shared.outbox.wake_relay``) or polls, publishes unpublished rows in id
order, signed per source, and marks them published. One replica per database relays (an advisory
lock held by a connection of its own, checked before every batch; the others stand by). When the
broker is down it backs off and retries; when a memory-only broker comes back empty it recreates
the topics and re-sends what was published recently, because that may have been lost with the
broker (consumers are idempotent). A row the producer refuses for good (too large) is set aside,
counted and alerted on, and the rows after it go on. Every replica, leader or not, measures the
outbox (backlog, oldest row's age) for its gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
from collections import Counter
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from shared.events.catalog import DLQ_SUFFIX
from shared.events.recording import EventTap
from shared.events.signature import sign_outgoing_batch
from shared.kafka import (
    REFUSED_FOR_GOOD,
    all_topics,
    ensure_topics,
    incarnation_of,
    make_producer,
    send_all,
    topic_names,
)
from shared.observability import (
    BROKER_RESETS,
    EVENTS_PRODUCED,
    EVENTS_UNSIGNED_PUBLISHED,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISH_FAILURES,
    OUTBOX_REFUSED,
    OUTBOX_REFUSED_ROWS,
)
from shared.relay_lock import STAND_BACK_SECONDS, LeadershipLost, RelayLock
from shared.sensitivity import neutral_label  # metric labels name no sensitive type
from shared.settings import BaseServiceSettings
from shared.trust import Keyring, load_keyring

log = logging.getLogger(__name__)

_ACK_TIMEOUT = 30.0  # seconds to wait for the broker to acknowledge one batch
# After a broker came back empty, every relay's producer goes on writing with what it knew of
# the old broker until it notices; a memory-only broker stores some of those writes under
# offsets it hands out again once the topics are recreated, shadowing one record with another.
# So a relay that saw the reset publishes nothing until that storm has passed, then sends its
# recent events again, once (the inboxes drop what had arrived before).
_RESET_SETTLE_SECONDS = 5.0
_MEASURE_SECONDS = 5.0  # every replica measures its oldest waiting event this often
_COUNT_EVERY = 6  # ... and counts the whole backlog every this many measures (30 s)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.2, 5.0  # seconds between attempts while the broker refuses


async def oldest_waiting(conn: asyncpg.Connection) -> float:
    """The age in seconds of the oldest event waiting to be published (0 if none): the first row
    of the partial index of unpublished rows, so as cheap with 200,000 waiting as with one."""
    age = await conn.fetchval(
        """SELECT extract(epoch FROM now() - created_at)::float FROM outbox
           WHERE published_at IS NULL AND refused_at IS NULL ORDER BY id LIMIT 1"""
    )
    return float(age or 0.0)


async def measure_outbox(conn: asyncpg.Connection) -> asyncpg.Record:
    """The outbox's backlog (rows waiting), the age in seconds of its oldest waiting row, and
    the rows set aside as refused: one pass over the partial index of unpublished rows."""
    row: asyncpg.Record = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE refused_at IS NULL) AS backlog,
                  coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE refused_at IS NULL)),
                           0)::float AS oldest,
                  count(*) FILTER (WHERE refused_at IS NOT NULL) AS refused
           FROM outbox WHERE published_at IS NULL"""
    )
    return row


class OutboxRelay:
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

    def _log_went_back(self, acks: list[RecordMetadata]) -> bool:
        """Whether a partition's log went back: this batch's first offset on it at or below the
        last one acknowledged before (each record batch is acknowledged with its first offset)."""
        first: dict[tuple[str, int], int] = {}
        last: dict[tuple[str, int], int] = {}
        for meta in acks:
            tp = (meta.topic, meta.partition)
            first[tp] = min(first.get(tp, meta.offset), meta.offset)
            last[tp] = max(last.get(tp, meta.offset), meta.offset)
        went_back = any(offset <= self._acked.get(tp, -1) for tp, offset in first.items())
        if went_back:
            self._acked.clear()
        else:
            self._acked.update(last)
        return went_back

    async def _watch_broker(self) -> None:
        """Notice a broker that came back empty (memory-only broker restarted) and repair it.

        Missing topics are one sign; a new incarnation marker is the other: another service may
        have recreated the topics before this one looked, and this service must still re-send
        its recent events and restart its consumers.
        """
        while True:
            await asyncio.sleep(2.0)
            try:
                names = await topic_names(self.settings)
                if any(t not in names for t in all_topics()) or incarnation_of(names) is None:
                    await ensure_topics(self.settings)
                    names = await topic_names(self.settings)
                current = incarnation_of(names)
                if self._incarnation is None:
                    self._incarnation = current
                elif current is not None and current != self._incarnation:
                    self._incarnation = current
                    self._broker_reset_seen()
                    if self.leader:
                        async with self._sending:
                            await self._resend_recent(current)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the watchdog must outlive any one failed check
                log.info("broker check failed", extra={"error": type(e).__name__})

    async def recover_broker_reset(self) -> None:
        """This relay saw the log go back: recreate what is missing, then re-send (called with
        ``_sending`` held, by the batch that saw it)."""
        await ensure_topics(self.settings)
        self._incarnation = incarnation_of(await topic_names(self.settings))
        self._broker_reset_seen()
        await self._resend_recent(self._incarnation)

    async def _catch_up_on_resets(self) -> None:
        """On taking the relay (start, a hand-over, a new producer): if the broker is on another
        log than the one this database's recent outbox was last sent to, re-send it there.

        ``relay_state`` names a new log only once the recent rows were queued again for it (in
        the same transaction), so a relay stopped while a reset settled leaves it naming the old
        log, and this re-sends what that relay could not."""
        current = incarnation_of(await topic_names(self.settings))
        if current is None:
            return
        async with self.pool.acquire() as conn:
            stored = await conn.fetchval("SELECT incarnation FROM relay_state")
        if stored is None:  # the first publication from this database: nothing to send again
            async with self.pool.acquire() as conn:
                await self._remember_incarnation(conn, current)
        elif stored != current and not (self._settling and self._resend_for == current):
            log.warning("broker is on another log than the last publication; re-sending recent events")
            async with self._sending:
                await self._resend_recent(current)

    @staticmethod
    async def _remember_incarnation(conn: asyncpg.Connection, current: str) -> None:
        await conn.execute(
            """INSERT INTO relay_state (incarnation) VALUES ($1)
               ON CONFLICT (singleton) DO UPDATE SET incarnation = $1, updated_at = now()""",
            current,
        )

    def _broker_reset_seen(self) -> None:
        BROKER_RESETS.labels(self.service).inc()
        for listener in self.reset_listeners:
            listener()  # e.g. consumers restart: their in-memory positions point past the new log

    async def _resend_recent(self, incarnation: str | None) -> None:
        """Hold publishing until the reset has settled, then queue the recent outbox again and
        record, in the same transaction, that it was sent for the broker log ``incarnation``.

        Sent at once, what this relay published in the next seconds could be shadowed by another
        producer's stale writes and would have to be sent again; a backlog waiting for the broker
        would then go out twice (the origin's outbox rows were updated 3.1 times per event so).
        The consumers re-form their groups in these seconds anyway."""
        self._settling = True
        # What the old log acknowledged says nothing of the new one: its first acknowledgements
        # would otherwise read as the log going back once more, and hold publishing again.
        self._acked.clear()
        log.warning(
            "broker lost its log; topics recreated, recent events re-sent once it settles",
            extra={"settle_seconds": _RESET_SETTLE_SECONDS},
        )
        if self._resend_again is not None:
            self._resend_again.cancel()  # a later sign of the same reset: wait from this one
        self._resend_for = incarnation
        self._resend_again = asyncio.create_task(
            self._resend_once_settled(incarnation), name="outbox-resend-again"
        )

    def _abandon_resend(self) -> None:
        """Drop a scheduled re-send (this relay stops, or is no longer the leader). Nothing is
        lost: ``relay_state`` still names the old log, so the next leader re-sends."""
        if self._resend_again is not None:
            self._resend_again.cancel()
        self._resend_again, self._resend_for, self._settling = None, None, False

    async def _resend_once_settled(self, incarnation: str | None) -> None:
        await asyncio.sleep(_RESET_SETTLE_SECONDS)
        while True:  # publishing stays held until the recent events are queued again
            try:
                async with self._sending:
                    requeued = await self._requeue_recent(incarnation)
                    self._settling = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: the relay could not publish either
                log.warning(
                    "re-send after a broker reset failed; retrying", extra={"error": type(e).__name__}
                )
                await asyncio.sleep(1.0)
            else:
                break
        log.info("broker reset settled; recent events re-sent", extra={"requeued": requeued})

    async def _requeue_recent(self, incarnation: str | None) -> str:
        async with self.pool.acquire() as conn, conn.transaction():
            requeued: str = await conn.execute(
                """UPDATE outbox SET published_at = NULL
                   WHERE published_at > now() - make_interval(secs => $1)""",
                self.settings.outbox_replay_window,
            )
            if incarnation is not None:
                await self._remember_incarnation(conn, incarnation)
        self._wake.set()
        return requeued

    async def _measure_forever(self) -> None:
        """Every replica's own measure of the outbox, leader or not: a standby, or a replica whose
        leader is stuck, still reports the outbox growing old (alert OutboxNotDraining)."""
        for turn in itertools.count():
            try:
                if turn % _COUNT_EVERY == 0:
                    await self._refresh_gauges()
                else:  # counting a large backlog costs a pass over it: the age alone, in between
                    async with self.pool.acquire() as conn:
                        OUTBOX_OLDEST_AGE.labels(self.service).set(await oldest_waiting(conn))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: the gauges keep their last values
                log.info("outbox measure failed", extra={"error": type(e).__name__})
            await asyncio.sleep(_MEASURE_SECONDS)

    async def _refresh_gauges(self) -> None:
        async with self.pool.acquire() as conn:
            row = await measure_outbox(conn)
        OUTBOX_BACKLOG.labels(self.service).set(row["backlog"])
        OUTBOX_OLDEST_AGE.labels(self.service).set(row["oldest"])
        OUTBOX_REFUSED_ROWS.labels(self.service).set(row["refused"])
