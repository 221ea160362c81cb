"""Kafka entry points of the registry: notifications addressed to the jurisdictions it serves, and
disclosures of its people that others report (the subject-access log)."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.registry.service_layer.counterpart import apply_notification
from services.registry.service_layer.disclosures import record_reported, reported_to_us
from services.registry.settings import RegistrySettings
from shared.consumer import EventConsumer
from shared.events.catalog import DISCLOSURE_TOPIC
from shared.events.envelope import Envelope


def consumers(pool: asyncpg.Pool, settings: RegistrySettings) -> list[EventConsumer]:
    served = settings.served

    async def handle(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        await apply_notification(conn, settings, event)

    return [
        EventConsumer(
            pool,
            settings,
            name=settings.consumer_group,
            topics=["exchange.notification.v1"],
            handler=handle,
            accept=lambda e: e.data.target_division in served,
        ),
        EventConsumer(
            pool,
            settings,
            name=f"{settings.consumer_group}-disclosures",
            topics=[DISCLOSURE_TOPIC],
            handler=record_reported,
            accept=lambda e: reported_to_us(settings, e),
        ),
    ]
