"""The transactional outbox, writing side: events are written with the business rows.

``add_event`` (one event) and ``add_events`` (many, with COPY) write into the caller's
transaction, so an event exists if and only if the rows it announces were committed (no dual
write). ``queue_event`` is ``add_event`` for events nothing in the transaction reads back: inside
``batched`` (a consumer's batch) the queued events are numbered with one statement and written
with one COPY when the block ends. ``wake_relay`` after the commit tells the relay
(``shared.outbox_relay``), which alone talks to the broker and publishes the rows in order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel

from shared.db import RELAY_CHANNEL
from shared.db import wake_relay as wake_relay
from shared.events.catalog import ADDRESSEE_HEADER, EventSpec, addressees, envelope_of, spec_for
from shared.events.envelope import AnyEnvelope, Envelope, new_event_id
from shared.tracing import current_traceparent

NOTIFY_CHANNEL = RELAY_CHANNEL


async def next_sequence(conn: asyncpg.Connection, subject: str, source: str) -> int:
    """The next per-subject sequence number; the row lock orders concurrent writers of a subject."""
    return int(
        await conn.fetchval(
            """INSERT INTO subject_sequences (subject, source, last_sequence) VALUES ($1, $2, 1)
               ON CONFLICT (subject, source) DO UPDATE SET last_sequence = subject_sequences.last_sequence + 1
               RETURNING last_sequence""",
            subject,
            source,
        )
    )


async def add_event(
    conn: asyncpg.Connection,
    *,
    event_type: str,
    source: str,
    subject: str,
    data: BaseModel,
    origin: str | None = None,
    destination: str | None = None,
    traceparent: str | None = None,
    key: str | None = None,
    sequence: int | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """Build the CloudEvent and write it to the outbox in the caller's transaction.

    ``event_id``: the id taken beforehand (``new_event_id``), when the record the event announces
    is written first and carries it."""
    # The current span (the request's, or the consumer's that reacts to an event) is the parent
    # of whatever this event causes; outside any span the caller's trace context is kept as given.
    traceparent = current_traceparent() or traceparent
    spec = _spec_carrying(event_type, data)  # checked before a sequence number is spent on it
    if sequence is None:
        sequence = await next_sequence(conn, subject, source)
    event = make_event(
        event_type=event_type,
        source=source,
        subject=subject,
        data=data,
        sequence=sequence,
        origin=origin,
        destination=destination,
        traceparent=traceparent,
        event_id=event_id,
    )
    await conn.execute(
        """INSERT INTO outbox (event_id, event_type, topic, key, value, headers) VALUES ($1,$2,$3,$4,$5,$6)""",
        event.id,
        event_type,
        spec.topic,
        key or subject,
        event.model_dump_json().encode(),
        kafka_headers(event),
    )
    return event


def _spec_carrying(event_type: str, data: BaseModel) -> EventSpec:
    """The catalog's entry for the event type, once ``data`` is of its payload type."""
    spec = spec_for(event_type)
    if not isinstance(data, spec.payload):
        raise TypeError(f"{event_type} carries {spec.payload.__name__}, not {type(data).__name__}")
    return spec


def kafka_headers(event: AnyEnvelope) -> dict[str, str]:
    """The Kafka headers an event is published with."""
    headers = {
        "content-type": "application/cloudevents+json",
        "ce_type": event.type,
        "ce_source": event.source,
    }
    if event.traceparent:
        headers["traceparent"] = event.traceparent
    divisions = addressees(event)
    if divisions is not None:
        headers[ADDRESSEE_HEADER] = ",".join(divisions)
    return headers


async def add_raw(
    conn: asyncpg.Connection,
    *,
    topic: str,
    key: str | None,
    value: bytes,
    headers: dict[str, str],
    event_id: uuid.UUID,
) -> None:
    """Queue an already-serialised message (dead letters, replays) for publishing."""
    await conn.execute(
        """INSERT INTO outbox (event_id, event_type, topic, key, value, headers) VALUES ($1,$2,$3,$4,$5,$6)""",
        event_id,
        headers.get("ce_type", "raw"),
        topic,
        key or "",
        value,
        headers,
    )


# --- batches: bulk loads (the operator's roster import) write thousands of events per transaction ---


async def next_sequences(conn: asyncpg.Connection, subjects: list[str], source: str) -> dict[str, int]:
    """``next_sequence`` for many distinct subjects in one statement."""
    rows = await conn.fetch(
        """INSERT INTO subject_sequences (subject, source, last_sequence)
           SELECT s, $2, 1 FROM unnest($1::text[]) AS s
           ON CONFLICT (subject, source) DO UPDATE SET last_sequence = subject_sequences.last_sequence + 1
           RETURNING subject, last_sequence""",
        subjects,
        source,
    )
    return {r["subject"]: int(r["last_sequence"]) for r in rows}


def make_event(
    *,
    event_type: str,
    source: str,
    subject: str,
    data: BaseModel,
    sequence: int,
    origin: str | None = None,
    destination: str | None = None,
    traceparent: str | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """The envelope ``add_event`` writes, for callers that write many at once with ``add_events``."""
    spec = _spec_carrying(event_type, data)
    return envelope_of(event_type)(
        id=event_id or new_event_id(),
        source=source,
        type=event_type,
        subject=subject,
        time=dt.datetime.now(dt.UTC),
        dataschema=spec.dataschema,
        sequence=sequence,
        origin=origin,
        destination=destination,
        traceparent=traceparent,
        data=data,
    )


async def add_events(
    conn: asyncpg.Connection, events: list[AnyEnvelope], keys: Sequence[str | None] | None = None
) -> None:
    """Write many events to the outbox with COPY in the caller's transaction, in list order.

    ``keys``: each event's Kafka key where it is not its subject (None: the subject).

    Like ``add_event`` it does not wake the relay: call ``wake_relay`` after the commit.

    COPY is safe here: every row is new (fresh event ids), so no conflict handling is needed. The
    rows go in binary, headers through the connection's jsonb codec: the connection must be set
    up by ``shared.db.init_connection``, as every pool of ours is.
    """
    if not events:
        return
    await conn.copy_records_to_table(
        "outbox",
        records=[
            (
                event.id,
                event.type,
                spec_for(event.type).topic,
                key or event.subject,
                event.model_dump_json().encode(),
                kafka_headers(event),
            )
            for event, key in zip(events, keys or [None] * len(events), strict=True)
        ],
        columns=["event_id", "event_type", "topic", "key", "value", "headers"],
    )


async def reserve_sequences(
    conn: asyncpg.Connection, numbered: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Number many events at once: ``numbered`` holds each event's (subject, sequence space), repeats
    counted; returns the number each pair had before them (its events take the next ones in turn).

    One statement, rows locked in a fixed order (two batches of one subject cannot deadlock)."""
    counts = Counter(numbered)
    pairs = sorted(counts)
    rows = await conn.fetch(
        """INSERT INTO subject_sequences (subject, source, last_sequence)
           SELECT s, src, n FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u(s, src, n, i)
           ORDER BY i
           ON CONFLICT (subject, source) DO UPDATE
               SET last_sequence = subject_sequences.last_sequence + EXCLUDED.last_sequence
           RETURNING subject, source, last_sequence""",
        [s for s, _ in pairs],
        [space for _, space in pairs],
        [counts[pair] for pair in pairs],
    )
    return {
        (r["subject"], r["source"]): int(r["last_sequence"]) - counts[(r["subject"], r["source"])]
        for r in rows
    }


# --- a consumer's batch: the events its handlers queue are numbered and written together ---


@dataclass(frozen=True, slots=True)
class Queued:
    """An event queued in a batch: what ``add_event`` takes, its id taken now, and the sequence
    space it is numbered in (its source's own, or one apart: ``shared.disclosures``)."""

    event_type: str
    source: str
    subject: str
    data: BaseModel
    event_id: uuid.UUID
    numbered_in: str
    origin: str | None = None
    destination: str | None = None
    traceparent: str | None = None
    key: str | None = None


class Batch:
    """Events queued on one connection's transaction, written when ``batched`` ends."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn
        self.queued: list[Queued] = []

    def add(self, item: Queued) -> uuid.UUID:
        _spec_carrying(item.event_type, item.data)  # refused now, where the caller can see why
        self.queued.append(item)
        return item.event_id

    async def write(self) -> None:
        """Number every queued event (one statement) and write them in queue order (one COPY)."""
        if not self.queued:
            return
        before = await reserve_sequences(self.conn, [(q.subject, q.numbered_in) for q in self.queued])
        events = []
        for q in self.queued:
            before[(q.subject, q.numbered_in)] += 1
            events.append(
                make_event(
                    event_type=q.event_type,
                    source=q.source,
                    subject=q.subject,
                    data=q.data,
                    sequence=before[(q.subject, q.numbered_in)],
                    origin=q.origin,
                    destination=q.destination,
                    traceparent=q.traceparent,
                    event_id=q.event_id,
                )
            )
        await add_events(self.conn, events, [q.key for q in self.queued])
        self.queued.clear()


_batch: ContextVar[Batch | None] = ContextVar("outbox_batch", default=None)


@contextlib.asynccontextmanager
async def batched(conn: asyncpg.Connection) -> AsyncIterator[Batch]:
    """Within the block, ``queue_event`` on ``conn`` collects events instead of writing each (two
    statements apiece); they are numbered and written together when the block ends, still in the
    caller's transaction, after everything else the block wrote. An exception writes nothing.
    Inside a batch already collecting on ``conn`` the block adds to it (written when it ends)."""
    outer = collecting(conn)
    if outer is not None:
        yield outer
        return
    batch = Batch(conn)
    token = _batch.set(batch)
    try:
        yield batch
    finally:
        _batch.reset(token)
    await batch.write()


def collecting(conn: asyncpg.Connection) -> Batch | None:
    """The batch collecting events on ``conn`` in this task, if any."""
    batch = _batch.get()
    return batch if batch is not None and batch.conn is conn else None


async def queue_event(
    conn: asyncpg.Connection,
    *,
    event_type: str,
    source: str,
    subject: str,
    data: BaseModel,
    origin: str | None = None,
    destination: str | None = None,
    traceparent: str | None = None,
    key: str | None = None,
    numbered_in: str | None = None,
) -> uuid.UUID:
    """``add_event`` for events nothing else in the transaction reads back: inside ``batched``
    it is queued and written with the batch's others, elsewhere at once. Returns its id.

    ``numbered_in``: the sequence space, when not the source's own (``shared.disclosures``)."""
    queued = Queued(
        event_type=event_type,
        source=source,
        subject=subject,
        data=data,
        event_id=new_event_id(),
        numbered_in=numbered_in or source,
        origin=origin,
        destination=destination,
        traceparent=current_traceparent() or traceparent,
        key=key,
    )
    batch = collecting(conn)
    if batch is not None:  # the usual case, without a context of its own per event
        return batch.add(queued)
    async with batched(conn) as batch:
        return batch.add(queued)
