"""Dead letters: messages a consumer could not apply, kept with their reason and replayable.

A dead letter is kept in the service's ``dead_letters`` table and queued through the outbox for
``<topic>.dlq``, in the transaction of the batch that gave up on it, with headers that say who
gave up, where the message was and why (the exchange counts every service's dead letters from
those topics). After the cause was fixed, ``replay_dead_letter`` applies it again through the
same consumer: signature, authority, inbox and handler, as if it arrived now.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING

import asyncpg
import orjson
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from shared.db import unit_of_work
from shared.errors import fault_text
from shared.events.catalog import DLQ_SUFFIX, parse_event, topic_for
from shared.events.envelope import AnyEnvelope, new_event_id
from shared.events.signature import Rejected
from shared.observability import DLQ_MESSAGES, EVENTS_REJECTED, redact
from shared.outbox import add_raw
from shared.sensitivity import (  # operators meet no sensitive type
    is_restricted,
    neutral_event_type,
    neutral_label,
    neutral_reason,
    neutral_text,
    neutral_topic,
)

if TYPE_CHECKING:  # the consumer keeps its dead letters here; only its type is needed back
    from shared.consumer import EventConsumer

log = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """A reason for a dead letter that names fields and rules but never echoes input values.

    A driver error is told by its class, SQLSTATE and constraint (``fault_text``), never by
    its text: PostgreSQL's DETAIL line quotes the failing row or key (a pregnancy's dates and id,
    a person's name), asyncpg's the argument it could not encode. The reason is kept in the
    service's ``dead_letters``, sent in the ``dlq_reason`` header of ``<topic>.dlq`` and logged.
    """
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)]
        return redact("invalid event: " + "; ".join(parts[:5]))
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        # a constraint's name may say "pregnancies"
        return neutral_text(fault_text(exc))
    return redact(f"{type(exc).__name__}: {exc}")[:500]


def _restricted(topic: str, doc: dict[str, object]) -> bool:
    """Whether a message is to be told as a restricted event: on a restricted topic, of no
    readable type, or restricted by its type and data (a correction of a pregnancy included)."""
    kind = doc.get("type")
    return not isinstance(kind, str) or neutral_topic(topic) != topic or is_restricted(kind, doc.get("data"))


def _restricted_message(topic: str, value: bytes) -> bool:
    """``_restricted`` of a message's bytes; one that is not a JSON object is told by its topic."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        doc = None
    return _restricted(topic, doc) if isinstance(doc, dict) else neutral_topic(topic) != topic


_MOST_FIELDS = 200
_DEEPEST = 32  # a forged message may nest lists as deep as the parser allows


def message_shape(topic: str, value: bytes) -> dict[str, object]:
    """What an operator may see of a dead letter's message: operations, not people (DESIGN
    section 8). Its size, its type (a sensitive one by the neutral name) and the names of its
    fields, never their values: the event's data carries names, dates of birth, identity numbers.

    The data's field names are withheld where the topic or the event is restricted (a sensitive
    type, or a correction of a sensitive record: ``shared.sensitivity.is_restricted``), since a
    field such as a due date says which kind of event it was. A name is redacted and cut like a reason
    (a forged message's keys may be anything, an identity number included)."""
    shape: dict[str, object] = {"bytes": len(value), "topic": neutral_topic(topic)}
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {**shape, "json": False}
    if not isinstance(doc, dict):
        return {**shape, "json": True, "fields": [], "top_level": type(doc).__name__}
    kind = doc.get("type")
    restricted = _restricted(topic, doc)
    fields: list[str] = []

    def walk(node: object, path: str, depth: int) -> None:
        if len(fields) >= _MOST_FIELDS or depth > _DEEPEST:
            return
        if isinstance(node, dict):
            for key, child in node.items():
                name = neutral_text(redact(str(key)))[:80]
                fields.append(f"{path}{name}")
                if not (restricted and path == "" and key == "data"):
                    walk(child, f"{path}{name}.", depth + 1)
        elif isinstance(node, list):
            for child in node[:1]:  # the first item's fields stand for the list's
                walk(child, f"{path[:-1]}[].", depth + 1)

    walk(doc, "", 0)
    return {
        **shape,
        "json": True,
        "type": neutral_text(redact(neutral_event_type(kind, doc.get("data"))))[:80]
        if isinstance(kind, str)
        else None,
        "fields": sorted(dict.fromkeys(fields)),
        "data_fields_withheld": restricted,
    }


def _headers(
    msg: ConsumerRecord[bytes, bytes], reason: str, consumer: str, service: str, letter_id: uuid.UUID
) -> dict[str, str]:
    """The message's own headers and the letter's: where it was, who gave up on it, and why."""
    headers = {k: v.decode(errors="replace") for k, v in (msg.headers or ())}
    headers.update(
        {
            "dlq_reason": reason,
            "dlq_topic": msg.topic,
            "dlq_partition": str(msg.partition),
            "dlq_offset": str(msg.offset),
            "dlq_consumer": consumer,
            # Who dead-lettered it, and one id however often it is re-sent: the exchange counts
            # every service's dead letters from the <topic>.dlq topics.
            "dlq_service": service,
            "dlq_id": str(letter_id),
            "dlq_at": dt.datetime.now(dt.UTC).isoformat(),
        }
    )
    return headers


async def keep(
    conn: asyncpg.Connection, msg: ConsumerRecord[bytes, bytes], reason: str, *, consumer: str, service: str
) -> None:
    """Keep the message with its reason, and queue it for ``<topic>.dlq`` through the outbox.

    The reason is kept neutral (``shared.sensitivity.neutral_reason``), in the table and in the
    ``dlq_reason`` header alike: every reader (``exchangectl dlq``, the exchange's dashboard, its
    census of the ``.dlq`` topics) shows it, some cut short first, and a replay needs only the
    message."""
    reason = neutral_reason(reason, _restricted_message(msg.topic, msg.value or b""))
    key = msg.key.decode(errors="replace") if msg.key else None
    letter_id = new_event_id()
    headers = _headers(msg, reason, consumer, service, letter_id)
    await conn.execute(
        """INSERT INTO dead_letters (consumer, topic, partition, "offset", key, value, headers, reason)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8)""",
        consumer,
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
    topic = neutral_label(msg.topic)  # one person's message: a sensitive topic or type by its category
    DLQ_MESSAGES.labels(service, consumer, topic).inc()
    log.warning("message dead-lettered", extra={"consumer": consumer, "topic": topic, "reason": reason})


async def refuse(
    conn: asyncpg.Connection, msg: ConsumerRecord[bytes, bytes], e: Rejected, *, consumer: str, service: str
) -> None:
    """Dead-letter a refused event with its reason, and count it (``events_rejected_total``)."""
    EVENTS_REJECTED.labels(service, consumer, e.reason).inc()
    await keep(conn, msg, redact(f"rejected: {e}")[:500], consumer=consumer, service=service)


def kept_message(event: AnyEnvelope, value: bytes) -> ConsumerRecord[bytes, bytes]:
    """An event a consumer kept after the broker gave it (a parked event) as a message to
    dead-letter: its topic by type, no partition or offset (-1), its subject as the key."""
    key = event.subject.encode()
    return ConsumerRecord(topic_for(event.type), -1, -1, 0, 0, key, value, None, len(key), len(value), [])


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
    value = bytes(row["value"])
    doc = orjson.loads(value)  # decoded once, for the parse and the signature check
    event = parse_event(doc if isinstance(doc, dict) else value)
    # A replayed letter is checked as if it arrived now: a refused one stays refused (raises).
    handler_consumer.check(event, doc)
    async with unit_of_work(pool) as conn:
        await handler_consumer.apply_one(conn, event)
        await conn.execute("UPDATE dead_letters SET replayed_at = now() WHERE id = $1", dead_letter_id)
    return True
