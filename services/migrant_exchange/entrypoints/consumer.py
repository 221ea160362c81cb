"""Kafka entry point of the exchange: everything registries publish, applied in order per subject.

One consumer reads every topic a registry produces to (vital events, certificates, feedback):
sequence numbers count a subject's events per source across all of them, so the exchange must
see them all to know that nothing is missing.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import ConsumerRecord, TopicPartition

from services.migrant_exchange.adapters import dead_letters as census
from services.migrant_exchange.domain import dead_letters
from services.migrant_exchange.service_layer import messagebus, roster
from services.migrant_exchange.settings import ExchangeSettings
from shared.consumer import EventConsumer
from shared.db import unit_of_work
from shared.events.catalog import DLQ_SUFFIX, TOPICS
from shared.events.envelope import Envelope
from shared.events.signature import bound_to_subject


def event_consumer(pool: asyncpg.Pool, settings: ExchangeSettings) -> EventConsumer:
    """The routing consumer: ``messagebus.HANDLERS``, each subject's events in sequence."""
    return EventConsumer(
        pool,
        settings,
        name=messagebus.routing_consumer(settings),
        topics=messagebus.TABLES["events"].topics,
        handler=messagebus.in_order(settings),
        batch=messagebus.in_batches(settings),
        rebuild=roster.rebuild_roster,
        authorize=bound_to_subject(settings.subject_key_secret.get_secret_value().encode()),
    )


def certificate_consumer(pool: asyncpg.Pool, settings: ExchangeSettings) -> EventConsumer:
    """Counts certificates per issuer and holder key from ``certificate.lifecycle.v1``, and their
    verifications from verification's disclosure events (the verification rate):
    ``messagebus.INDICATORS``."""
    return EventConsumer(
        pool,
        settings,
        name=f"{settings.consumer_group}-indicators",
        topics=messagebus.TABLES["indicators"].topics,
        handler=messagebus.indicators(settings),
        accept=messagebus.TABLES["indicators"].accept,
        addressed=messagebus.TABLES["indicators"].addressed,
        passed_over=messagebus.TABLES["indicators"].passed_over,
        background=True,
    )


class DeadLetterCensus(EventConsumer):
    """Reads every service's ``<topic>.dlq`` and counts the letters (headers only: a dead letter
    is someone's message, and often one that could not be parsed or was refused)."""

    async def process(
        self, messages: list[ConsumerRecord[bytes, bytes]], positions: dict[TopicPartition, int] | None = None
    ) -> None:
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
        async with unit_of_work(self.pool) as conn:
            await census.record(conn, letters)
            await self.save_positions(conn, positions)
        self.handled += len(messages)


def dead_letter_census(pool: asyncpg.Pool, settings: ExchangeSettings) -> EventConsumer:
    return DeadLetterCensus(
        pool,
        settings,
        name=f"{settings.consumer_group}-dead-letters",
        topics=[t + DLQ_SUFFIX for t in TOPICS],
        handler=_never,
        background=True,
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
