"""Kafka entry point of verification: the read model of certificates, kept by the issuers'
lifecycle events and corrections through the handler table, ``service_layer.messagebus.HANDLERS``."""

from __future__ import annotations

import asyncpg

from services.verification.service_layer import handlers, messagebus
from services.verification.settings import VerificationSettings
from shared.consumer import EventConsumer
from shared.events.signature import bound_to_subject


class ReadModelConsumer(EventConsumer):
    """Names its group after the read model's replay generation, read when it starts."""

    async def run(self) -> None:
        async with self.pool.acquire() as conn:
            generation = await conn.fetchval("SELECT generation FROM projection_state")
        self.name = self.settings.consumer_name(int(generation or 0))  # type: ignore[attr-defined]
        await super().run()


def consumers(pool: asyncpg.Pool, settings: VerificationSettings) -> list[EventConsumer]:
    return [
        ReadModelConsumer(
            pool,
            settings,
            name=settings.consumer_group,
            topics=messagebus.TOPICS,
            handler=messagebus.handler(settings),
            rebuild=handlers.rebuild_read_model,
            authorize=bound_to_subject(settings.subject_key_secret.get_secret_value().encode()),
            background=True,
        )
    ]
