"""Kafka entry point of the exchange: vital events in, feedback in."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.migrant_exchange.service_layer import handlers
from services.migrant_exchange.settings import ExchangeSettings
from shared.consumer import EventConsumer
from shared.events.catalog import VITAL_TOPICS
from shared.events.envelope import Envelope


def consumers(pool: asyncpg.Pool, settings: ExchangeSettings) -> list[EventConsumer]:
    async def on_vital(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        await handlers.route_vital_event(conn, settings, event)

    async def on_feedback(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        await handlers.record_feedback(conn, event.data)

    return [
        EventConsumer(
            pool,
            settings,
            name=f"{settings.consumer_group}-vital",
            topics=list(VITAL_TOPICS),
            handler=on_vital,
        ),
        EventConsumer(
            pool,
            settings,
            name=f"{settings.consumer_group}-feedback",
            topics=["exchange.feedback.v1"],
            handler=on_feedback,
        ),
    ]
