"""Use cases of the exchange: route vital events to counterparts, close notifications on feedback."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.domain.routing import Whereabouts, after_event, counterparts
from services.migrant_exchange.settings import ExchangeSettings
from shared.events import payloads as p
from shared.events.envelope import Envelope
from shared.outbox import add_event

EXCHANGE_SOURCE = "/exchange"


async def route_vital_event(
    conn: asyncpg.Connection, settings: ExchangeSettings, event: Envelope[Any]
) -> int:
    """Update the roster and notify every counterpart jurisdiction the agreements allow. Returns how many."""
    producer = event.producer
    if producer is None:
        return 0
    data = event.data.model_dump(mode="json")
    before = await repo.whereabouts(conn, event.subject)
    after = after_event(before, event.type, data, Whereabouts(event.origin, event.destination), event.time)
    await repo.save_whereabouts(conn, event.subject, after, event.type.startswith("migration."), event.time)
    sent = 0
    for target in sorted(counterparts(producer, event.type, data, after)):
        agreement = await repo.agreement(conn, producer, target)
        if agreement is None or not _covers(agreement, event.type):
            continue
        deadline_s = agreement["deadline_seconds"] or settings.feedback_deadline_seconds
        fields = (agreement["visible_fields"] or {}).get(event.type)
        notification = {
            "notification_id": uuid.uuid4(),
            "target_division": target,
            "source_division": producer,
            "subject": event.subject,
            "event_id": event.id,
            "event_type": event.type,
            "event_sequence": event.sequence,
            "event_time": event.time,
            "payload": {k: v for k, v in data.items() if fields is None or k in fields},
            "deadline": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=deadline_s),
        }
        if not await repo.insert_notification(conn, notification):
            continue
        await add_event(
            conn,
            event_type="exchange.notification.v1",
            source=EXCHANGE_SOURCE,
            subject=event.subject,
            data=p.ExchangeNotificationV1(**{k: v for k, v in notification.items() if k != "subject"}),
            origin=producer,
            destination=target,
            traceparent=event.traceparent,
            key=f"{target}:{event.subject}",
        )
        sent += 1
    return sent


def _covers(agreement: asyncpg.Record, event_type: str) -> bool:
    types = agreement["event_types"]
    return "*" in types or event_type in types


async def record_feedback(conn: asyncpg.Connection, feedback: p.ExchangeFeedbackV1) -> bool:
    """Close the notification the feedback answers (idempotent: a second answer changes nothing)."""
    return await repo.close_notification(
        conn,
        feedback.notification_id,
        feedback.from_division,
        feedback.outcome,
        [c.model_dump() for c in feedback.conflicts],
        feedback.reason,
    )
