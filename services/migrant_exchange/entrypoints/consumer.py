"""Kafka entry point of the exchange: everything registries publish, applied in order per subject.

One consumer reads every topic a registry produces to (vital events, certificates, feedback):
sequence numbers count a subject's events per source across all of them, so the exchange must
see them all to know that nothing is missing.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from services.migrant_exchange.adapters import dead_letters as census
from services.migrant_exchange.adapters import stats
from services.migrant_exchange.domain import dead_letters
from services.migrant_exchange.service_layer import disclosures, handlers, ordering
from services.migrant_exchange.settings import ExchangeSettings
from shared.consumer import EventConsumer
from shared.events.catalog import DISCLOSURE_TOPIC, DLQ_SUFFIX, TOPICS
from shared.events.envelope import Envelope

# Everything but the exchange's own notifications and the disclosures (counted by the indicators).
REGISTRY_TOPICS = [t for t in TOPICS if t not in ("exchange.notification.v1", DISCLOSURE_TOPIC)]


def applier(settings: ExchangeSettings) -> ordering.Apply:
    """What applying one event means for the exchange, by event type."""

    async def apply(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        if event.type == "exchange.feedback.v1":
            await handlers.record_feedback(conn, event.data)
        else:  # certificates too: the holder's other registry keeps a copy that reconciliation compares
            await handlers.route_vital_event(conn, settings, event)

    return apply


def event_consumer(pool: asyncpg.Pool, settings: ExchangeSettings) -> EventConsumer:
    apply = applier(settings)

    async def on_event(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        await ordering.apply_in_order(conn, event, apply, settings.sequence_gap_seconds)

    return EventConsumer(
        pool,
        settings,
        name=f"{settings.consumer_group}-events",
        topics=REGISTRY_TOPICS,
        handler=on_event,
        rebuild=handlers.rebuild_roster,
    )


def certificate_consumer(pool: asyncpg.Pool, settings: ExchangeSettings) -> EventConsumer:
    """Counts certificates per issuer and holder key from ``certificate.lifecycle.v1``, and their
    verifications from verification's disclosure events (the verification rate)."""

    async def on_certificate(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        d = event.data
        if event.type == "disclosure.recorded.v1":
            await disclosures.count_verification(conn, event)
        elif event.type == "certificate.issued.v1":
            await stats.record_certificate_issued(
                conn, d.certificate_number, d.issuer, event.subject, event.time, d.valid_until
            )
        elif event.type == "certificate.revoked.v1":
            await stats.record_certificate_revoked(
                conn, d.certificate_number, d.issuer, event.subject, event.time
            )

    return EventConsumer(
        pool,
        settings,
        name=f"{settings.consumer_group}-indicators",
        topics=["certificate.lifecycle.v1", DISCLOSURE_TOPIC],
        handler=on_certificate,
        # Of the disclosures only verification's: the others are for the registries.
        accept=lambda e: e.type != "disclosure.recorded.v1" or e.source == "/verification",
    )


class DeadLetterCensus(EventConsumer):
    """Reads every service's ``<topic>.dlq`` and counts the letters (headers only: a dead letter
    is someone's message, and often one that could not be parsed or was refused)."""

    async def process(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        letters = [
            dead_letters.letter(
                {k: v.decode(errors="replace") for k, v in (m.headers or ())},
                m.topic,
                m.partition,
                m.offset,
                m.timestamp,
            )
            for m in messages
        ]
        async with self.pool.acquire() as conn:
            await census.record(conn, letters)
        self.handled += len(messages)


def dead_letter_census(pool: asyncpg.Pool, settings: ExchangeSettings) -> EventConsumer:
    return DeadLetterCensus(
        pool,
        settings,
        name=f"{settings.consumer_group}-dead-letters",
        topics=[t + DLQ_SUFFIX for t in TOPICS],
        handler=_never,
    )


async def _never(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
    raise AssertionError("the census reads dead letters' headers, it applies no event")


def consumers(pool: asyncpg.Pool, settings: ExchangeSettings) -> list[EventConsumer]:
    """The routing consumer, the certificate projection of the operations centre, and the census
    of every service's dead letters."""
    return [
        event_consumer(pool, settings),
        certificate_consumer(pool, settings),
        dead_letter_census(pool, settings),
    ]
