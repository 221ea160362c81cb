"""Kafka entry points of the registry: notifications addressed to the jurisdictions it serves, and
disclosures of its people that others report (the subject-access log). Both apply through the
handler table, ``service_layer.messagebus.HANDLERS``.

Every registry reads the whole notification and disclosure topics (notification payloads are
sealed to their target), so each consumer first looks at the addressee in the message's header
(``shared.events.catalog.ADDRESSEE_HEADER``) and leaves someone else's events undecoded, then at
the addressee in the JSON and leaves them unparsed; ``accept`` then judges the parsed event in
full."""

from __future__ import annotations

import asyncpg

from services.registry.service_layer import messagebus
from services.registry.service_layer.disclosures import reported_to_us
from services.registry.settings import RegistrySettings
from shared.consumer import EventConsumer
from shared.consumer_admission import addressed_elsewhere
from shared.events.catalog import DISCLOSURE_TOPIC


def consumers(pool: asyncpg.Pool, settings: RegistrySettings) -> list[EventConsumer]:
    served = settings.served
    elsewhere = addressed_elsewhere(served)
    notifications, disclosures = ["exchange.notification.v1"], [DISCLOSURE_TOPIC]
    return [
        EventConsumer(
            pool,
            settings,
            name=settings.consumer_group,
            topics=notifications,
            handler=messagebus.handler(settings, notifications),
            batch=messagebus.batch(settings, notifications),
            accept=lambda e: e.data.target_division in served,
            addressed=lambda doc: doc["data"]["target_division"] in served,
            passed_over=elsewhere,
        ),
        EventConsumer(
            pool,
            settings,
            name=f"{settings.consumer_group}-disclosures",
            topics=disclosures,
            handler=messagebus.handler(settings, disclosures),
            batch=messagebus.batch(settings, disclosures),
            accept=lambda e: reported_to_us(settings, e),
            addressed=lambda doc: any(d in served for d in doc["data"]["record_at"]),
            passed_over=elsewhere,
            background=True,
        ),
    ]
