"""Idempotent Kafka consumers: the inbox row and the effect commit together, offsets after.

A polled batch is applied in one database transaction, optimistically without savepoints; if a
message fails, the batch is applied again with a savepoint per message, so a bad message costs
only its own savepoint. Messages that cannot be parsed go to the dead-letter
queue at once; messages whose handler fails are retried with backoff, then dead-lettered.
The consumer goes on either way. Dead letters are kept and replayed by ``shared.dead_letters``;
joining the group and reading from the recorded positions is ``shared.consumer_group``.

Before any handler runs, every event's signature is checked against the trust list and its
sender's authority for what it says (``shared.events.signature``); an event that fails is
dead-lettered with the reason and counted in ``events_rejected_total``, never applied. A handler
that finds a sender without authority in its own records raises ``Rejected`` the same way.
That admission, and the dead-lettering of what is not taken, is ``shared.consumer_admission``
(inherited); here the batch's transaction, the inbox, the handlers and the retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator

import asyncpg
import orjson
from aiokafka import ConsumerRecord, TopicPartition

from shared import inbox
from shared.consumer_admission import (
    _ELSEWHERE,
    Accept,
    Addressed,
    Authority,
    ConsumerAdmission,
    PassedOver,
    header,
    trust_list,
)
from shared.consumer_group import GroupMember
from shared.db import is_transient, unit_of_work
from shared.dead_letters import describe_error
from shared.dispatch import BatchHandler
from shared.events.envelope import AnyEnvelope
from shared.events.signature import Rejected, authority
from shared.observability import EVENT_LATENCY, EVENTS_APPLIED, INBOX_DUPLICATES, labelled
from shared.outbox import batched
from shared.sensitivity import neutral_label, neutral_type  # metrics and logs name no sensitive type
from shared.settings import BaseServiceSettings
from shared.tracing import consumer_span, trace_id_of, tracing_enabled
from shared.trust import TrustList

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, AnyEnvelope], Awaitable[None]]
# Rebuilds a cleared projection from every event at once, with the same outcome as applying them
# one by one through the handler (replay from the beginning; the inbox is written by the caller).
BulkRebuild = Callable[[asyncpg.Connection, Iterable[AnyEnvelope]], Awaitable[None]]


class PoisonMessage(Exception):
    """A handler's verdict that a message can never be applied: dead-letter it without retrying."""


class _Isolate(Exception):
    """A message of an optimistic batch failed: apply the batch again, one savepoint a message."""


class EventConsumer(ConsumerAdmission, GroupMember):
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
        addressed: Addressed | None = None,
        passed_over: PassedOver | None = None,
        rebuild: BulkRebuild | None = None,
        batch: BatchHandler | None = None,
        authorize: Authority = authority,
        trust: TrustList | None = None,
        background: bool = False,
    ):
        super().__init__(pool, settings, name=name, topics=topics, background=background)
        self.batch = batch
        self.authorize = authorize
        self.trust = trust if trust is not None else trust_list(settings.trust_list_file)
        self.rebuild = rebuild
        self.handler = handler
        self.accept = accept or (lambda _: True)
        self.addressed = addressed
        self.passed_over = passed_over

    async def process(
        self, messages: list[ConsumerRecord[bytes, bytes]], positions: dict[TopicPartition, int] | None = None
    ) -> None:
        """Apply a batch in one transaction; failures are retried alone, then dead-lettered.
        ``positions`` are recorded in the batch's transaction, or once the failures were retried
        or dead-lettered (never ahead of a message not taken yet).

        Optimistically first: without a savepoint per message (two round trips each, a fifth of
        the statements of a hop), the inbox rows of the whole batch in one statement, the events
        the handlers queue (``outbox.queue_event``) numbered and written together at the end, and
        through the batch handler where the consumer has one (all the batch's events in one
        call). If any message fails, that transaction is rolled back whole and the batch is
        applied again event by event with a savepoint per message, so the others still commit.
        """
        try:
            await self._process(messages, positions, isolate=False)
        except _Isolate:
            await self._process(messages, positions, isolate=True)

    async def _process(
        self,
        messages: list[ConsumerRecord[bytes, bytes]],
        positions: dict[TopicPartition, int] | None,
        *,
        isolate: bool,
    ) -> None:
        failed: list[tuple[ConsumerRecord[bytes, bytes], AnyEnvelope, BaseException]] = []
        applied: list[AnyEnvelope] = []
        docs = [_ELSEWHERE if self._passed_over(msg) else _decoded(msg) for msg in messages]  # decoded once
        async with unit_of_work(self.pool) as conn:
            seen = await self._already_applied(conn, docs)
            if isolate:  # a savepoint a message: what each writes stays with it
                for i, msg in enumerate(messages):
                    await self._take(conn, msg, docs[i], i in seen, applied, failed)
                    self.handled += 1  # completed (a statement that blocks for ever never gets here)
            else:  # the events the handlers queue are numbered and written together at the end
                async with batched(conn):
                    applied = await self._apply_all(conn, messages, docs, seen)
                self.handled += len(messages)  # completed (a statement that blocks for ever never gets here)
            if not failed:
                await self.save_positions(conn, positions)
        self._count_applied(applied)
        for msg, event, first_error in failed:
            await self._retry_then_dead_letter(msg, event, first_error)
        if failed:
            async with self.pool.acquire() as conn:
                await self.save_positions(conn, positions)

    async def _take(
        self,
        conn: asyncpg.Connection,
        msg: ConsumerRecord[bytes, bytes],
        doc: object,
        duplicate: bool,
        applied: list[AnyEnvelope],
        failed: list[tuple[ConsumerRecord[bytes, bytes], AnyEnvelope, BaseException]],
    ) -> None:
        """One message of a batch taken a savepoint at a time: skipped, dead-lettered, applied, or
        kept for a retry."""
        event = await self._admit(conn, msg, doc, duplicate)
        if event is None:
            return
        try:
            if await self._apply_traced(conn, event, msg):
                applied.append(event)
        except Exception as e:
            if is_transient(e):
                raise  # the database, not the message: the whole batch is read again
            if isinstance(e, Rejected):
                await self.reject(conn, msg, e)
            elif isinstance(e, PoisonMessage):
                await self.dead_letter(conn, msg, describe_error(e))
            else:
                failed.append((msg, event, e))

    async def _apply_all(
        self,
        conn: asyncpg.Connection,
        messages: list[ConsumerRecord[bytes, bytes]],
        docs: list[object],
        seen: set[int],
    ) -> list[AnyEnvelope]:
        """The optimistic way: every admitted event recorded in the inbox with one statement, then
        applied by the batch handler in one call, or by the handler one by one. Any failure of an
        event is the batch's (``_Isolate``)."""
        taken: dict[uuid.UUID, tuple[AnyEnvelope, ConsumerRecord[bytes, bytes]]] = {}
        for i, msg in enumerate(messages):
            event = await self._admit(conn, msg, docs[i], i in seen)
            if event is not None and event.id not in taken:  # the inbox applies an id once
                taken[event.id] = (event, msg)
        fresh = await inbox.record(conn, self.name, list(taken))
        events = [event for event_id, (event, _) in taken.items() if event_id in fresh]
        INBOX_DUPLICATES.labels(self.service, self.name).inc(len(taken) - len(events))
        try:
            if self.batch is not None and not tracing_enabled():  # spans are per event
                await self.batch(conn, events)
                for event in events:
                    self._log_applied(event, trace_id_of(_parent(taken[event.id][1], event)))
            else:
                for event in events:
                    await self._handle_traced(conn, event, taken[event.id][1])
        except Exception as e:
            if is_transient(e):
                raise  # the database, not the message: the whole batch is read again
            raise _Isolate from e
        return events

    async def _already_applied(self, conn: asyncpg.Connection, docs: list[object]) -> set[int]:
        """Positions in ``messages`` of events the inbox already has, in one round trip.

        After a broker reset every relay re-sends its recent events (twice): tens of thousands of
        redeliveries, each of which would otherwise be validated in full and inserted into the
        inbox one statement at a time before being found a duplicate. Only the id is read here;
        a message whose id cannot be read goes the whole way (and is dead-lettered there).

        Someone else's events are not looked up: ``_admit`` leaves them unparsed whether this
        consumer saw them before or not, and a registry reading the whole notification topic
        would otherwise look up every other jurisdiction's events in its inbox."""
        ids: dict[int, uuid.UUID] = {}
        for i, doc in enumerate(docs):
            if not self._maybe_addressed(doc):
                continue
            with contextlib.suppress(Exception):
                ids[i] = uuid.UUID(str(doc["id"]))  # type: ignore[index]
        known = await inbox.already_applied(conn, self.name, set(ids.values()))
        return {i for i, event_id in ids.items() if event_id in known}

    async def _apply_traced(
        self, conn: asyncpg.Connection, event: AnyEnvelope, msg: ConsumerRecord[bytes, bytes]
    ) -> bool:
        """``apply_one`` in a savepoint, inside a span continuing the Kafka header's trace context
        (the CloudEvent's as backup). False when the inbox already had the event."""
        with consumer_span(self.name, event.type, msg.topic, _parent(msg, event)) as trace_id:
            fresh = await self.apply_one(conn, event, count=False)
        self._log_applied(event, trace_id)
        return fresh

    async def _handle_traced(
        self, conn: asyncpg.Connection, event: AnyEnvelope, msg: ConsumerRecord[bytes, bytes]
    ) -> None:
        """The handler's effect of an event the inbox just took, inside the same span."""
        with consumer_span(self.name, event.type, msg.topic, _parent(msg, event)) as trace_id:
            await self.handler(conn, event)
        self._log_applied(event, trace_id)

    def _log_applied(self, event: AnyEnvelope, trace_id: str | None) -> None:
        """The line that ties this service's work to the caller's trace (traced events only).

        The type is the neutral one operators see: with the event id beside it, the real type
        would name a person's sensitive event that every listing shows only by its category."""
        if trace_id:
            log.info(
                "event applied",
                extra={
                    "consumer": self.name,
                    "type": neutral_type(event.type),
                    "event_id": str(event.id),
                    "trace_id": trace_id,
                },
            )

    async def rebuild_from(self, conn: asyncpg.Connection, events: Iterable[AnyEnvelope]) -> int:
        """Apply every event, in order, to a cleared projection in one go (the consumer's
        ``rebuild``) and record the accepted ones in its cleared inbox, in the caller's
        transaction. Returns how many were accepted."""
        if self.rebuild is None:
            raise TypeError(f"consumer {self.name!r} has no bulk rebuild")
        ids: list[uuid.UUID] = []
        seen: set[uuid.UUID] = set()

        def accepted() -> Iterator[AnyEnvelope]:
            for event in events:
                if event.id not in seen and self.accept(event):  # the inbox applies an id once
                    seen.add(event.id)
                    ids.append(event.id)
                    yield event

        await self.rebuild(conn, accepted())
        await inbox.record_cleared(conn, self.name, ids)
        return len(ids)

    async def apply_one(
        self, conn: asyncpg.Connection, event: AnyEnvelope, *, isolate: bool = True, count: bool = True
    ) -> bool:
        """The inbox row and the handler's effect, in a savepoint when ``isolate`` (one message's
        failure leaves the others). False when the inbox already had the event. ``count``:
        record the metrics now; batch callers count once their transaction committed."""
        async with conn.transaction() if isolate else contextlib.nullcontext():
            if not await inbox.record(conn, self.name, [event.id]):
                INBOX_DUPLICATES.labels(self.service, self.name).inc()
                return False
            await self.handler(conn, event)
        if count:
            self._count_applied([event])
        return True

    def _count_applied(self, events: list[AnyEnvelope]) -> None:
        now = dt.datetime.now(dt.UTC)
        for label, n in Counter(neutral_label(event.type) for event in events).items():
            labelled(EVENTS_APPLIED, self.service, self.name, label).inc(n)
        latency = labelled(EVENT_LATENCY, self.service, self.name)
        for event in events:
            latency.observe(max(0.0, (now - event.time).total_seconds()))

    async def _retry_then_dead_letter(
        self, msg: ConsumerRecord[bytes, bytes], event: AnyEnvelope, error: BaseException
    ) -> None:
        for attempt in range(self.settings.consumer_max_retries):
            await asyncio.sleep(0.1 * 2**attempt)
            try:
                async with unit_of_work(self.pool) as conn:
                    fresh = await self._apply_traced(conn, event, msg)
                if fresh:
                    self._count_applied([event])
                return
            except (PoisonMessage, Rejected) as e:
                error = e
                break
            except Exception as e:
                if is_transient(e):
                    raise  # not the message's fault: the batch is read again once the database answers
                error = e
        async with unit_of_work(self.pool) as conn:
            if isinstance(error, Rejected):
                await self.reject(conn, msg, error)
            else:
                await self.dead_letter(conn, msg, describe_error(error))


def _decoded(msg: ConsumerRecord[bytes, bytes]) -> object:
    """The message's JSON (None when it is not JSON: parsing it then tells why, for the dead letter)."""
    try:
        return orjson.loads(msg.value or b"")
    except orjson.JSONDecodeError:
        return None


def _parent(msg: ConsumerRecord[bytes, bytes], event: AnyEnvelope) -> str | None:
    """The trace context an event's work continues: the Kafka header's, the CloudEvent's as backup."""
    return header(msg, "traceparent") or event.traceparent
