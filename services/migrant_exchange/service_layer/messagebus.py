"""The exchange's handler tables: what each event type registries publish means here.

``HANDLERS`` is the routing consumer's table, used by the consumer (through ``ordering``: each
subject's events apply in sequence), by the sweep that releases expired gaps, by
``exchangectl replay exchange-roster --event-by-event`` and by dead-letter replay; a
reconciliation repair travels as ``record.corrected.v1`` and is routed by the same entry.
``INDICATORS`` is the operations centre's table: a second consumer group with its own inbox
reads the certificate events again to count them, so one type has one handler per table.
``TABLES`` holds both by consumer group, with their topics: the consumers, the replay and the
sweep dispatch through it.

Beside each entry, who may send it (DESIGN section 10): ``shared.events.signature.authority``
checks what the envelope alone decides before any handler runs; the handler checks the rest
against the exchange's own records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from services.migrant_exchange.adapters import delivery, stats
from services.migrant_exchange.service_layer import batches, disclosures, handlers, ordering
from services.migrant_exchange.settings import ExchangeSettings
from shared import dead_letters
from shared.consumer_admission import PassedOver, header
from shared.disclosures import BATCH_TYPE as DISCLOSURE_BATCH
from shared.disclosures import EVENT_TYPE as DISCLOSURE
from shared.disclosures import TYPES as DISCLOSURE_TYPES
from shared.dispatch import BatchHandler, Bound, Handler, dispatcher
from shared.events.catalog import CURRENT_TYPES, DISCLOSURE_TOPIC, TOPICS, spec_for
from shared.events.envelope import Envelope
from shared.events.signature import Rejected

FEEDBACK = "exchange.feedback.v1"
FEEDBACK_BATCH = "exchange.feedback_batch.v1"
# Everything but the exchange's own notifications and the disclosures (counted by the indicators).
REGISTRY_TOPICS = [t for t in TOPICS if t not in ("exchange.notification.v1", DISCLOSURE_TOPIC)]
INDICATOR_TOPICS = ["certificate.lifecycle.v1", DISCLOSURE_TOPIC]


async def _feedback(conn: asyncpg.Connection, settings: ExchangeSettings, event: Envelope[Any]) -> None:
    for answer in handlers.answers(event):
        await handlers.record_feedback(conn, answer)


# Routed: every event a registry publishes but feedback; certificates too (the holder's other
# registry keeps a copy that reconciliation compares). Authority: a registry trusted for the
# event's source, certificates only from their issuer; the handler adds what the exchange's
# records decide: a record's making and end only from its holders, and a pregnancy only from
# the mother's hukou or residence on the roster (``handlers.check_her_registry``).
ROUTED = frozenset(
    t for t in CURRENT_TYPES if spec_for(t).topic in REGISTRY_TOPICS and t not in (FEEDBACK, FEEDBACK_BATCH)
)

HANDLERS: dict[str, Handler[ExchangeSettings]] = {
    **dict.fromkeys(sorted(ROUTED), handlers.route_vital_event),
    # Authority: the division it speaks for (or the exchange, relaying a REST-only answer), and
    # only the notification's target (``record_feedback`` checks the notification). A batch of
    # answers: only the division itself, and each answer only for a notification addressed to it.
    FEEDBACK: _feedback,
    FEEDBACK_BATCH: _feedback,
}


async def _issued(conn: asyncpg.Connection, settings: ExchangeSettings, event: Envelope[Any]) -> None:
    d = event.data
    await stats.record_certificate_issued(
        conn, d.certificate_number, d.issuer, event.subject, event.time, d.valid_until
    )


async def _revoked(conn: asyncpg.Connection, settings: ExchangeSettings, event: Envelope[Any]) -> None:
    d = event.data
    await stats.record_certificate_revoked(conn, d.certificate_number, d.issuer, event.subject, event.time)


async def _verified(conn: asyncpg.Connection, settings: ExchangeSettings, event: Envelope[Any]) -> None:
    await disclosures.count_verification(conn, event)


INDICATORS: dict[str, Handler[ExchangeSettings]] = {
    "certificate.issued.v1": _issued,  # authority: the issuer
    "certificate.revoked.v1": _revoked,  # authority: the issuer
    # Authority: the party that disclosed; of the disclosures only verification's are counted
    # (``counted``), the others are for the registries. Verification reports the checks it chains
    # together as one batch.
    DISCLOSURE: _verified,
    DISCLOSURE_BATCH: _verified,
}


def counted(event: Envelope[Any]) -> bool:
    """What the indicators consumer takes: certificate events, and verification's disclosures."""
    return event.type not in DISCLOSURE_TYPES or event.source == "/verification"


def own_disclosure(msg: ConsumerRecord[bytes, bytes]) -> bool:
    """``maybe_counted``'s cheaper half, on the headers: the exchange's own disclosures are passed
    over without being decoded."""
    return header(msg, "ce_type") in DISCLOSURE_TYPES and header(msg, "ce_source") == disclosures.SOURCE


def maybe_counted(doc: dict[str, Any]) -> bool:
    """``counted``'s cheap half, on the decoded JSON before parsing: the exchange's own disclosures
    (a batch per unit of work that sent notifications) are passed over unparsed. Other parties'
    are parsed, so that a malformed one is dead-lettered here as on every topic
    (``tests/reliability``)."""
    return bool(doc["type"] not in DISCLOSURE_TYPES or doc["source"] != disclosures.SOURCE)


@dataclass(frozen=True, slots=True)
class Table:
    """One consumer group's handler table: the topics it reads, what each type does, and which
    events it takes (``None``: all)."""

    topics: list[str]
    handlers: dict[str, Handler[ExchangeSettings]]
    accept: Callable[[Envelope[Any]], bool] | None = None
    addressed: Callable[[dict[str, Any]], bool] | None = None  # ``accept``'s cheap half (consumer_admission)
    passed_over: PassedOver | None = None  # ``addressed``'s cheaper half, on the headers

    def dispatch(self, settings: ExchangeSettings) -> Bound:
        """The table as one function: the event's type picks the entry (``shared.dispatch``)."""
        return dispatcher(self.handlers, settings, topics=self.topics)


# The exchange's tables by consumer group (``<CONSUMER_GROUP>-<key>``, ``entrypoints/consumer.py``).
TABLES: dict[str, Table] = {
    "events": Table(REGISTRY_TOPICS, HANDLERS),
    "indicators": Table(
        INDICATOR_TOPICS, INDICATORS, accept=counted, addressed=maybe_counted, passed_over=own_disclosure
    ),
}


def applier(settings: ExchangeSettings) -> ordering.Apply:
    """``HANDLERS`` as one function, for ``ordering`` to call once an event is next in line."""
    return TABLES["events"].dispatch(settings)


def routing_consumer(settings: ExchangeSettings) -> str:
    """The routing consumer's name (its group, inbox and dead letters go by it)."""
    return f"{settings.consumer_group}-events"


def refuser(settings: ExchangeSettings) -> ordering.Refuse:
    """A parked event refused or failing in its turn becomes the routing consumer's dead letter, as
    it would have had it been refused or failed on arrival (its value as parked), and a refusal is
    counted alike."""
    consumer, service = routing_consumer(settings), settings.service_name

    async def refuse(conn: asyncpg.Connection, event: Envelope[Any], value: bytes, e: Exception) -> None:
        message = dead_letters.kept_message(event, value)
        if isinstance(e, Rejected):
            await dead_letters.refuse(conn, message, e, consumer=consumer, service=service)
        else:
            await dead_letters.keep(
                conn, message, dead_letters.describe_error(e), consumer=consumer, service=service
            )

    return refuse


def in_order(settings: ExchangeSettings) -> Bound:
    """The routing consumer's handler: each subject's events through ``HANDLERS`` in sequence."""
    apply, refuse = applier(settings), refuser(settings)

    async def handle(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        await ordering.apply_in_order(conn, event, apply, settings.sequence_gap_seconds, refuse)

    return handle


def in_batches(settings: ExchangeSettings) -> BatchHandler:
    """The routing consumer's whole-batch handler: ``in_order`` for each event in turn, in a few
    statements for the batch (``batches``) when every event is of a kind it folds and applies at
    once; otherwise event by event, in the same transaction."""
    one = in_order(settings)

    async def handle(conn: asyncpg.Connection, events: list[Envelope[Any]]) -> None:
        if all(batches.plain(e, ROUTED) for e in events):
            line = await batches.in_line(conn, events)
            if line is not None:
                reached, late = line
                await batches.route(conn, settings, [e for e in events if e.type not in batches.FEEDBACK])
                await batches.close(conn, [e for e in events if e.type in batches.FEEDBACK])
                await delivery.set_progress_of(conn, reached)
                if late:  # the rare batch with a late arrival or a replay: a gap's case may learn of it
                    await ordering.arrived_late(conn, late)
                return
        for event in events:
            await one(conn, event)

    return handle


def indicators(settings: ExchangeSettings) -> Bound:
    """The indicators consumer's handler: ``INDICATORS`` as one function."""
    return TABLES["indicators"].dispatch(settings)
