"""HTTP routes of the migrant exchange: notifications, feedback over REST, the roster (the app: ``entrypoints/app.py``)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.entrypoints import views
from services.migrant_exchange.service_layer import handlers
from shared.app import UnitOfWork
from shared.auth import Client, require
from shared.errors import Forbidden, NotFound
from shared.events import payloads as p
from shared.identity import DivisionCode
from shared.openapi import problems
from shared.text import PlainText

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["exchange"])
ExchangeReader = Annotated[Client, require("exchange:read")]
FeedbackWriter = Annotated[Client, require("exchange:feedback")]
State = Literal["pending", "applied", "conflict", "rejected", "overdue"]


class Notification(BaseModel):
    notification_id: uuid.UUID
    target_division: str
    source_division: str
    subject: str | None = Field(description="pseudonymous subject key; withheld from operators")
    event_id: uuid.UUID
    event_type: str = Field(description="for operators, a sensitive type reads as the neutral category")
    event_sequence: int
    event_time: dt.datetime
    state: State
    deadline: dt.datetime
    created_at: dt.datetime
    overdue_at: dt.datetime | None = None
    attempts: int = 1
    feedback_at: dt.datetime | None
    conflicts: list[dict[str, Any]] | None = Field(
        description="fields that disagree; operators get their names only, never the values"
    )
    reason: str | None
    payload: dict[str, Any] | None = Field(default=None, description="only for the addressed jurisdiction")
    withheld_fields: list[str] = Field(
        default_factory=list,
        description="fields the agreement withholds from the addressee: absent from the payload by contract",
    )


class Migrant(BaseModel):
    subject: str | None = Field(description="pseudonymous subject key; withheld from operators")
    hukou_division: str | None
    residence_division: str | None
    moves: int
    last_event_at: dt.datetime


class FeedbackIn(BaseModel):
    outcome: Literal["applied", "conflict", "rejected"]
    conflicts: list[p.FieldConflict] = Field(default_factory=list, max_length=100)
    reason: PlainText | None = Field(default=None, max_length=500)


def _scope_to(client: Client, jurisdiction: str | None) -> str | None:
    """Jurisdictions see their own traffic; operators may look at any (as operations: ``views``).
    Any other client without a jurisdiction is refused, not given everything."""
    if client.kind == "operator":
        return jurisdiction
    views.require_jurisdiction(client)
    if jurisdiction is not None and jurisdiction != client.jurisdiction:
        raise Forbidden(
            "a jurisdiction reads only its own notifications", field="jurisdiction", rule="own-jurisdiction"
        )
    return client.jurisdiction


@router.get(
    "/notifications", response_model=list[Notification], summary="Notifications by jurisdiction and state"
)
async def list_notifications(
    conn: UnitOfWork,
    client: ExchangeReader,
    jurisdiction: DivisionCode | None = None,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """What was sent to or by a jurisdiction; the addressee also gets the payload to apply over REST.
    Operators see every jurisdiction's traffic as operations: no subject key, no sensitive type,
    conflicting field names without their values."""
    scope = _scope_to(client, jurisdiction)
    rows = await repo.list_notifications(conn, scope, state, limit, after)
    return await views.notifications_read(conn, client, rows)


@router.get(
    "/notifications/{notification_id}",
    response_model=Notification,
    summary="One notification, with its payload for the addressee",
    responses=problems(404),
)
async def get_notification(
    notification_id: uuid.UUID, conn: UnitOfWork, client: ExchangeReader
) -> dict[str, Any]:
    """How a jurisdiction not on Kafka fetches what it must apply: the payload goes to the
    addressee's clients only, and each pick-up is written to the audit log. Operators see the
    operation; the sender sees its own notification without the payload."""
    row = await repo.get_notification(conn, notification_id)
    if row is None or (client.kind != "operator" and client.jurisdiction not in _parties(row)):
        raise _no_such_notification("concerns")
    return (await views.notifications_read(conn, client, [row]))[0]


def _parties(row: asyncpg.Record) -> tuple[str, str]:
    return row["target_division"], row["source_division"]


def _no_such_notification(relation: str) -> NotFound:
    # The same answer for "no such id" and "not yours": another jurisdiction's traffic is not ours to confirm.
    return NotFound(
        f"no notification with this id {relation} the client's jurisdiction",
        field="notification_id",
        rule="addressed-to-client",
    )


@router.post(
    "/notifications/{notification_id}/feedback",
    response_model=Notification,
    summary="Answer a notification over REST",
    responses=problems(404, 409),
)
async def post_feedback(
    notification_id: uuid.UUID, body: FeedbackIn, conn: UnitOfWork, client: FeedbackWriter
) -> dict[str, Any]:
    """For jurisdictions not on Kafka: the addressee reports applied / conflict / rejected, once.
    The same answer again (a retry) gets the notification as it is; another answer, 409."""
    answer = handlers.AnswerOverRest(
        notification_id, client.jurisdiction, body.outcome, body.conflicts, body.reason
    )
    updated = await handlers.answer_over_rest(conn, answer)
    if updated is None:
        raise _no_such_notification("is addressed to")
    return {**dict(updated), "notification_id": notification_id, "payload": None}


@router.get("/migrants", response_model=list[Migrant], summary="The migrant roster by origin and destination")
async def list_migrants(
    conn: UnitOfWork,
    client: ExchangeReader,
    origin: DivisionCode | None = None,
    destination: DivisionCode | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    """People registered in one place and living in another (pseudonymous keys, and none for
    operators: they see the movements)."""
    views.require_jurisdiction(client)
    if client.kind != "operator" and client.jurisdiction not in (origin, destination):
        raise Forbidden(
            "name your own jurisdiction as origin or destination", field="origin", rule="own-jurisdiction"
        )
    return [views.migrant(client, r) for r in await repo.list_migrants(conn, origin, destination, limit)]
