"""The transactional outbox, writing side: events are written with the business rows.

``add_event`` (one event) and ``add_events`` (many, with COPY) write into the caller's
transaction, so an event exists if and only if the rows it announces were committed (no dual
write). ``wake_relay`` after the commit tells the relay (``shared.outbox_relay``), which alone
talks to the broker and publishes the rows in order.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel

from shared.db import RELAY_CHANNEL
from shared.db import wake_relay as wake_relay
from shared.events.catalog import EventSpec, spec_for
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
        _headers(event),
    )
    return event


def _spec_carrying(event_type: str, data: BaseModel) -> EventSpec:
    """The catalog's entry for the event type, once ``data`` is of its payload type."""
    spec = spec_for(event_type)
    if not isinstance(data, spec.payload):
        raise TypeError(f"{event_type} carries {spec.payload.__name__}, not {type(data).__name__}")
    return spec


def _headers(event: AnyEnvelope) -> dict[str, str]:
    """The Kafka headers an event is published with."""
    headers = {"content-type": "application/cloudevents+json", "ce_type": event.type}
    if event.traceparent:
        headers["traceparent"] = event.traceparent
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
    return Envelope[spec.payload](  # type: ignore[name-defined]
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


async def add_events(conn: asyncpg.Connection, events: list[AnyEnvelope]) -> None:
    """Write many events to the outbox with COPY in the caller's transaction, in list order.

    Like ``add_event`` it does not wake the relay: call ``wake_relay`` after the commit.

    COPY is safe here: every row is new (fresh event ids), so no conflict handling is needed. The
    rows go as CSV text, so the copy works whatever type codecs the connection has set for jsonb.
    """
    if not events:
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for event in events:
        writer.writerow(
            (
                event.id,
                event.type,
                spec_for(event.type).topic,
                event.subject,
                "\\x" + event.model_dump_json().encode().hex(),
                orjson.dumps(_headers(event)).decode(),
            )
        )
    await conn.copy_to_table(
        "outbox",
        source=io.BytesIO(buffer.getvalue().encode()),
        columns=["event_id", "event_type", "topic", "key", "value", "headers"],
        format="csv",
    )
