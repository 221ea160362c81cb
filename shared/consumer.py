"""Idempotent Kafka consumers: the inbox row and the effect commit together, offsets after.

A polled batch is applied in one database transaction, optimistically without savepoints; if a
message fails, the batch is applied again with a savepoint per message, so a bad message costs
only its own savepoint. Messages that cannot be parsed go to the dead-letter
queue at once; messages whose handler fails are retried with backoff, then dead-lettered.
The consumer goes on either way.

Before any handler runs, every event's signature is checked against the trust list and its
sender's authority for what it says (``shared.events.signature``); an event that fails is
dead-lettered with the reason and counted in ``events_rejected_total``, never applied. A handler
that finds a sender without authority in its own records raises ``Rejected`` the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from shared import consumer_positions
from shared.db import is_unavailable
from shared.events.catalog import DLQ_SUFFIX, parse_event, spec_for
from shared.events.envelope import Envelope, new_event_id
from shared.events.signature import Rejected, authority, verify_value
from shared.kafka import ensure_topics, incarnation_of, make_consumer, stop_consumer, topic_names
from shared.observability import (
    CONSUMER_RESTARTS,
    DLQ_MESSAGES,
    EVENT_LATENCY,
    EVENTS_APPLIED,
    EVENTS_CONSUMED,
    EVENTS_REJECTED,
    INBOX_DUPLICATES,
    redact,
)
from shared.outbox import add_raw, wake_relay
from shared.sensitivity import neutral_label  # metric labels name no sensitive type
from shared.settings import BaseServiceSettings
from shared.tracing import consumer_span
from shared.trust import Party, TrustList, load_trust_list

log = logging.getLogger(__name__)

# No single broker call may hold a consumer longer than this; past it the member is replaced.
_KAFKA_CALL_TIMEOUT = 30.0

Handler = Callable[[asyncpg.Connection, Envelope[Any]], Awaitable[None]]
Accept = Callable[[Envelope[Any]], bool]
# Who may send what, from the envelope alone: raises ``Rejected`` (see shared.events.signature).
Authority = Callable[[Envelope[Any], Party], None]
# Rebuilds a cleared projection from every event at once, with the same outcome as applying them
# one by one through the handler (replay from the beginning; the inbox is written by the caller).
BulkRebuild = Callable[[asyncpg.Connection, Iterable[Envelope[Any]]], Awaitable[None]]


class PoisonMessage(Exception):
    """A handler's verdict that a message can never be applied: dead-letter it without retrying."""


@lru_cache(maxsize=8)
def trust_list(path: str | None) -> TrustList:
    """The trust list a process verifies with, read once; none configured trusts nobody."""
    return load_trust_list(path) if path else TrustList()


class _Isolate(Exception):
    """A message of an optimistic batch failed: apply the batch again, one savepoint a message."""


def describe_error(exc: BaseException) -> str:
    """A reason for a dead letter that names fields and rules but never echoes input values."""
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)]
        return redact("invalid event: " + "; ".join(parts[:5]))
    return redact(f"{type(exc).__name__}: {exc}")[:500]


class EventConsumer:
    """One consumer group applying events with a handler, exactly once in effect."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: BaseServiceSettings,
        *,
        name: str,
        topics: list[str],
        handler: Handler,
        accept: Accept | None = None,
        rebuild: BulkRebuild | None = None,
        authorize: Authority = authority,
        trust: TrustList | None = None,
    ):
        self.pool = pool
        self.authorize = authorize
        self.trust = trust if trust is not None else trust_list(settings.trust_list_file)
        self.rebuild = rebuild
        self.settings = settings
        self.name = name
        self.topics = topics
        self.handler = handler
        self.accept = accept or (lambda _: True)
        self.service = settings.service_name
        self.connected = False
        self._assigned = False
        self._restart = False
        self._rewind = False  # after a broker reset: read the new log from its start
        self.incarnation = ""  # the broker log this member reads (shared.kafka incarnation marker)
        # Messages this process has taken in hand, committed or not: a long batch that moves is
        # progress, one blocked on its first statement is not (see shared.consumer_health).
        self.handled = 0

    async def run(self) -> None:
        """Consume for ever: any error ends this member, and a fresh one rejoins the group and
        resumes from the positions the group recorded (see ``shared.consumer_positions``)."""
        backoff = 0.5
        while True:
            seek = _Seek(self)
            seek.consumer = consumer = make_consumer(self.settings, self.name, self.topics, seek)
            reason = "error"
            try:
                await ensure_topics(self.settings)
                self.incarnation = incarnation_of(await topic_names(self.settings)) or ""
                await asyncio.wait_for(consumer.start(), _KAFKA_CALL_TIMEOUT)
                self.connected, backoff = True, 0.5
                await self._consume(consumer)
                reason = "broker_reset"
            except asyncio.CancelledError:
                raise
            except (TimeoutError, KafkaError, OSError) as e:
                log.warning("consumer reconnecting", extra={"consumer": self.name, "error": type(e).__name__})
            except Exception as e:  # the database or a bug: back off and go on
                log.exception(
                    "consumer loop failed", extra={"consumer": self.name, "error": type(e).__name__}
                )
            finally:
                self.connected = self._assigned = False
                await stop_consumer(consumer)
            CONSUMER_RESTARTS.labels(self.service, self.name, reason).inc()
            log.info("fresh consumer starting", extra={"consumer": self.name, "reason": reason})
            await asyncio.sleep(backoff if reason == "error" else 0)
            backoff = min(backoff * 2, 5.0)

    @property
    def assigned(self) -> bool:
        """True once the group gave this member partitions (startup waits for it in tests and demos)."""
        return self._assigned

    def restart(self) -> None:
        """The broker came back empty: read its new log again from the beginning.

        Neither the in-memory positions nor the group's committed offsets can be trusted: until
        this service noticed the reset, the member went on fetching the new log from its old
        positions (skipping whatever the new log held below them) and may have committed those.
        Events read twice are skipped by the inbox."""
        self._restart = self._rewind = True

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        """Apply batches until a broker reset asks for a fresh member. Every call to the broker
        is bounded in time, so a broker that stops answering ends this member instead of
        holding it for ever."""
        self._restart = False
        while not self._restart:
            batches = await asyncio.wait_for(
                consumer.getmany(timeout_ms=500, max_records=self.settings.outbox_batch_size),
                _KAFKA_CALL_TIMEOUT,
            )
            self._assigned = bool(consumer.assignment())
            messages = [m for part in batches.values() for m in part]
            if not messages:
                continue
            try:
                await self.process(messages)
            except Exception:
                # Nothing of the batch was committed: rewind so it is read again.
                for tp, part in batches.items():
                    consumer.seek(tp, part[0].offset)
                raise
            positions = {tp: part[-1].offset + 1 for tp, part in batches.items()}
            async with self.pool.acquire() as conn:
                await consumer_positions.save(conn, self.name, positions, self.incarnation)
            try:
                # For the broker's tools (lag per group); the group resumes from its own positions.
                await asyncio.wait_for(consumer.commit(positions), _KAFKA_CALL_TIMEOUT)
            except CommitFailedError:
                # The group rebalanced under this member (a broker that lost the group answers
                # so too): the coordinator rejoins by itself and the listener seeks on assignment.
                log.info("offset commit refused; rejoining", extra={"consumer": self.name})

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Seek every partition given to this member to where the group stands (its own record)."""
        async with self.pool.acquire() as conn:
            recorded = await consumer_positions.load(conn, self.name)
        for tp in assigned:
            start = consumer_positions.start_offset(recorded.get(tp), self.incarnation, self._rewind)
            if start is not None:
                consumer.seek(tp, start)
        self._rewind = False

    async def process(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply a batch in one transaction; failures are retried alone, then dead-lettered.

        Optimistically first: without a savepoint per message (two round trips each, a fifth of
        the statements of a hop). If any message fails, that transaction is rolled back whole
        and the batch is applied again with a savepoint per message, so the others still commit.
        """
        try:
            await self._process(messages, isolate=False)
        except _Isolate:
            await self._process(messages, isolate=True)

    async def _process(self, messages: list[ConsumerRecord[bytes, bytes]], *, isolate: bool) -> None:
        failed: list[tuple[ConsumerRecord[bytes, bytes], Envelope[Any], BaseException]] = []
        applied: list[Envelope[Any]] = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                seen = await self._already_applied(conn, messages)
                for i, msg in enumerate(messages):
                    await self._take(conn, msg, i in seen, applied, failed, isolate=isolate)
                    self.handled += 1  # completed (a statement that blocks for ever never gets here)
            await wake_relay(conn)  # after the commit: see shared.outbox.wake_relay
        self._count_applied(applied)
        for msg, event, first_error in failed:
            await self._retry_then_dead_letter(msg, event, first_error)

    async def _take(
        self,
        conn: asyncpg.Connection,
        msg: ConsumerRecord[bytes, bytes],
        duplicate: bool,
        applied: list[Envelope[Any]],
        failed: list[tuple[ConsumerRecord[bytes, bytes], Envelope[Any], BaseException]],
        *,
        isolate: bool,
    ) -> None:
        """One message of a batch: skipped, dead-lettered, applied, or kept for a retry."""
        EVENTS_CONSUMED.labels(self.service, self.name, neutral_label(msg.topic)).inc()
        if duplicate:  # a redelivery (rebalance, replay, a re-send after a broker reset)
            INBOX_DUPLICATES.labels(self.service, self.name).inc()
            return
        try:
            event = parse_event(msg.value or b"")
            wanted = self.accept(event) if spec_for(event.type).topic == msg.topic else None
        except Exception as e:  # unparseable, or a filter that chokes on it: never stall
            await self.dead_letter(conn, msg, describe_error(e))
            return
        if wanted is None:
            # A well-formed event on the wrong topic: its handler would misread it.
            await self.dead_letter(conn, msg, f"event type {event.type} does not belong on topic {msg.topic}")
            return
        if not wanted:
            return
        try:
            self.check(msg.value or b"", event)
        except Rejected as e:
            await self.reject(conn, msg, e)
            return
        try:
            if await self._apply_traced(conn, event, msg, isolate=isolate):
                applied.append(event)
        except Exception as e:
            if _transient(e):
                raise  # the database, not the message: the whole batch is read again
            if not isolate:
                raise _Isolate from e
            if isinstance(e, Rejected):
                await self.reject(conn, msg, e)
            elif isinstance(e, PoisonMessage):
                await self.dead_letter(conn, msg, describe_error(e))
            else:
                failed.append((msg, event, e))

    async def _already_applied(
        self, conn: asyncpg.Connection, messages: list[ConsumerRecord[bytes, bytes]]
    ) -> set[int]:
        """Positions in ``messages`` of events the inbox already has, in one round trip.

        After a broker reset every relay re-sends its recent events (twice): tens of thousands of
        redeliveries, each of which would otherwise be validated in full and inserted into the
        inbox one statement at a time before being found a duplicate. Only the id is read here;
        a message whose id cannot be read goes the whole way (and is dead-lettered there)."""
        ids: dict[int, uuid.UUID] = {}
        for i, msg in enumerate(messages):
            with contextlib.suppress(Exception):
                ids[i] = uuid.UUID(str(orjson.loads(msg.value or b"")["id"]))
        if not ids:
            return set()
        rows = await conn.fetch(
            "SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = ANY($2::uuid[])",
            self.name,
            list(set(ids.values())),
        )
        known = {r["event_id"] for r in rows}
        return {i for i, event_id in ids.items() if event_id in known}

    def check(self, value: bytes, event: Envelope[Any]) -> None:
        """The event's signature and its sender's authority, or ``Rejected``."""
        self.authorize(event, verify_value(value, self.trust))

    async def reject(self, conn: asyncpg.Connection, msg: ConsumerRecord[bytes, bytes], e: Rejected) -> None:
        """Dead-letter a refused event with its reason, and count it."""
        EVENTS_REJECTED.labels(self.service, self.name, e.reason).inc()
        await self.dead_letter(conn, msg, redact(f"rejected: {e}")[:500])

    async def _apply_traced(
        self,
        conn: asyncpg.Connection,
        event: Envelope[Any],
        msg: ConsumerRecord[bytes, bytes],
        *,
        isolate: bool = True,
    ) -> bool:
        """Apply inside a span continuing the Kafka header's trace context (the CloudEvent's as
        backup). False when the inbox already had the event."""
        parent = _header(msg, "traceparent") or event.traceparent
        with consumer_span(self.name, event.type, msg.topic, parent) as trace_id:
            fresh = await self._apply_one(conn, event, isolate=isolate, count=False)
        if trace_id:  # traced events only: the line that ties this service's work to the caller's trace
            log.info(
                "event applied",
                extra={
                    "consumer": self.name,
                    "type": event.type,
                    "event_id": str(event.id),
                    "trace_id": trace_id,
                },
            )
        return fresh

    async def rebuild_from(self, conn: asyncpg.Connection, events: Iterable[Envelope[Any]]) -> int:
        """Apply every event, in order, to a cleared projection in one go (the consumer's
        ``rebuild``) and record the accepted ones in its cleared inbox, in the caller's
        transaction. Returns how many were accepted."""
        if self.rebuild is None:
            raise TypeError(f"consumer {self.name!r} has no bulk rebuild")
        ids: list[Any] = []
        seen: set[Any] = set()

        def accepted() -> Iterator[Envelope[Any]]:
            for event in events:
                if event.id not in seen and self.accept(event):  # the inbox applies an id once
                    seen.add(event.id)
                    ids.append(event.id)
                    yield event

        await self.rebuild(conn, accepted())
        await conn.copy_records_to_table(
            "inbox", records=[(self.name, i) for i in ids], columns=["consumer", "event_id"]
        )
        return len(ids)

    async def _apply_one(
        self, conn: asyncpg.Connection, event: Envelope[Any], *, isolate: bool = True, count: bool = True
    ) -> bool:
        """The inbox row and the handler's effect, in a savepoint when ``isolate`` (one message's
        failure leaves the others). False when the inbox already had the event. ``count``:
        record the metrics now; batch callers count once their transaction committed."""
        async with conn.transaction() if isolate else contextlib.nullcontext():
            fresh = await conn.fetchval(
                "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                self.name,
                event.id,
            )
            if not fresh:
                INBOX_DUPLICATES.labels(self.service, self.name).inc()
                return False
            await self.handler(conn, event)
        if count:
            self._count_applied([event])
        return True

    def _count_applied(self, events: list[Envelope[Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        for event in events:
            EVENTS_APPLIED.labels(self.service, self.name, neutral_label(event.type)).inc()
            EVENT_LATENCY.labels(self.service, self.name).observe(
                max(0.0, (now - event.time).total_seconds())
            )

    async def _retry_then_dead_letter(
        self, msg: ConsumerRecord[bytes, bytes], event: Envelope[Any], error: BaseException
    ) -> None:
        for attempt in range(self.settings.consumer_max_retries):
            await asyncio.sleep(0.1 * 2**attempt)
            try:
                async with self.pool.acquire() as conn:
                    async with conn.transaction():
                        fresh = await self._apply_traced(conn, event, msg)
                    await wake_relay(conn)
                if fresh:
                    self._count_applied([event])
                return
            except (PoisonMessage, Rejected) as e:
                error = e
                break
            except Exception as e:
                if _transient(e):
                    raise  # not the message's fault: the batch is read again once the database answers
                error = e
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                if isinstance(error, Rejected):
                    await self.reject(conn, msg, error)
                else:
                    await self.dead_letter(conn, msg, describe_error(error))
            await wake_relay(conn)

    async def dead_letter(
        self, conn: asyncpg.Connection, msg: ConsumerRecord[bytes, bytes], reason: str
    ) -> None:
        """Keep the message with its reason, and queue it for ``<topic>.dlq`` through the outbox."""
        key = msg.key.decode(errors="replace") if msg.key else None
        headers = {k: v.decode(errors="replace") for k, v in (msg.headers or ())}
        letter_id = new_event_id()
        headers.update(
            {
                "dlq_reason": reason,
                "dlq_topic": msg.topic,
                "dlq_partition": str(msg.partition),
                "dlq_offset": str(msg.offset),
                "dlq_consumer": self.name,
                # Who dead-lettered it, and one id however often it is re-sent: the exchange counts
                # every service's dead letters from the <topic>.dlq topics.
                "dlq_service": self.service,
                "dlq_id": str(letter_id),
                "dlq_at": dt.datetime.now(dt.UTC).isoformat(),
            }
        )
        await conn.execute(
            """INSERT INTO dead_letters (consumer, topic, partition, "offset", key, value, headers, reason)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8)""",
            self.name,
            msg.topic,
            msg.partition,
            msg.offset,
            key,
            msg.value or b"",
            headers,
            reason,
        )
        await add_raw(
            conn,
            topic=msg.topic + DLQ_SUFFIX,
            key=key,
            value=msg.value or b"",
            headers=headers,
            event_id=letter_id,
        )
        DLQ_MESSAGES.labels(self.service, self.name, neutral_label(msg.topic)).inc()
        log.warning(
            "message dead-lettered", extra={"consumer": self.name, "topic": msg.topic, "reason": reason}
        )


class _Seek(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands each assignment to the consumer, which seeks to the group's recorded positions."""

    def __init__(self, owner: EventConsumer):
        self.owner = owner
        self.consumer: AIOKafkaConsumer | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.consumer is not None and assigned:
            await self.owner.on_assigned(self.consumer, assigned)


def _transient(exc: BaseException) -> bool:
    """A failure of the database rather than of the message (unreachable, a statement timed out
    or was cancelled, a lock wait): never a reason to dead-letter."""
    return is_unavailable(exc) or isinstance(
        exc, TimeoutError | asyncpg.QueryCanceledError | asyncpg.LockNotAvailableError
    )


def _header(msg: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in msg.headers or ():
        if key == name and value:
            return str(value.decode(errors="replace"))
    return None


async def replay_dead_letter(
    pool: asyncpg.Pool, dead_letter_id: int, handler_consumer: EventConsumer
) -> bool:
    """Apply a dead letter again (after a fix). True if it applied; it stays dead otherwise."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM dead_letters WHERE id = $1 AND replayed_at IS NULL", dead_letter_id
        )
    if row is None:
        return False
    event = parse_event(bytes(row["value"]))
    # A replayed letter is checked as if it arrived now: a refused one stays refused (raises).
    handler_consumer.check(bytes(row["value"]), event)
    async with pool.acquire() as conn, conn.transaction():
        await handler_consumer._apply_one(conn, event)
        await conn.execute("UPDATE dead_letters SET replayed_at = now() WHERE id = $1", dead_letter_id)
    return True
