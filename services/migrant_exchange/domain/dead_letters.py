"""Every service's dead letters as the exchange counts them: where, when and why, never what.

Each service dead-letters what it cannot apply into its own table and, through its outbox, onto
``<topic>.dlq`` with headers that say which service, consumer and topic, why, when, and an id
that stays the same when the letter is re-sent (``shared.dead_letters.keep``).
The exchange reads those topics and keeps one row per letter: the census behind the dashboard and
``GET /v1/dead-letters``. A reason is kept redacted and neutral, and grouped by its kind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shared.events.catalog import DLQ_SUFFIX
from shared.observability import redact
from shared.sensitivity import neutral_text, neutral_topic


@dataclass(frozen=True)
class Letter:
    id: str
    service: str
    consumer: str | None
    topic: str
    reason: str
    detail: str
    created_at: dt.datetime


def reason_kind(reason: str) -> str:
    """The kind of a dead letter's reason, for counting: a refused event by its refusal reason,
    a malformed one as such, a failed handler by its error's class."""
    if reason.startswith("rejected: "):
        return "rejected: " + reason.split(":")[1].strip()
    if reason.startswith("invalid event"):
        return "invalid event"
    if " does not belong on topic " in reason:
        return "wrong topic"
    head = reason.split(":", 1)[0].strip()
    return head[:60] if head.isidentifier() else "other"


def letter(headers: dict[str, str], dlq_topic: str, partition: int, offset: int, timestamp_ms: int) -> Letter:
    """One census row from a ``<topic>.dlq`` record's headers (its value is never read)."""
    reason = neutral_text(redact(headers.get("dlq_reason", "")))
    at = headers.get("dlq_at")
    try:
        created = dt.datetime.fromisoformat(at) if at else None
    except ValueError:
        created = None
    return Letter(
        id=headers.get("dlq_id") or f"{dlq_topic}/{partition}/{offset}",
        service=(headers.get("dlq_service") or headers.get("dlq_consumer") or "unknown")[:100],
        consumer=(headers.get("dlq_consumer") or None),
        topic=neutral_topic(headers.get("dlq_topic") or dlq_topic.removesuffix(DLQ_SUFFIX))[:100],
        reason=reason_kind(reason),
        detail=reason[:200],
        created_at=created or dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC),
    )
