"""Kafka entry point of the exchange: everything registries publish, applied in order per subject.

One consumer reads every topic a registry produces to (vital events, certificates, feedback):
sequence numbers count a subject's events per source across all of them, so the exchange must
see them all to know that nothing is missing.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.migrant_exchange.adapters import stats
from services.migrant_exchange.service_layer import handlers, ordering
from services.migrant_exchange.settings import ExchangeSettings
from shared.consumer import EventConsumer
from shared.events.catalog import TOPICS
from shared.events.envelope import Envelope

# Everything but the exchange's own notifications.
REGISTRY_TOPICS = [t for t in TOPICS if t != "exchange.notification.v1"]


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
    """Counts certificates per issuer and holder key from ``certificate.lifecycle.v1``."""

    async def on_certificate(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        d = event.data
        if event.type == "certificate.issued.v1":
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
        topics=["certificate.lifecycle.v1"],
        handler=on_certificate,
    )


def consumers(pool: asyncpg.Pool, settings: ExchangeSettings) -> list[EventConsumer]:
    """The routing consumer and the certificate projection of the operations centre."""
    return [event_consumer(pool, settings), certificate_consumer(pool, settings)]
