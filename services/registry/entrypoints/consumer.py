"""Kafka entry point of the registry: notifications addressed to the jurisdictions it serves."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.registry.service_layer.counterpart import apply_notification
from services.registry.settings import RegistrySettings
from shared.consumer import EventConsumer
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
        )
    ]
