"""Use cases of the exchange: route vital events to counterparts, re-send, close on feedback."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from services.migrant_exchange.adapters import delivery
from services.migrant_exchange.adapters import discrepancies as cases
from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.domain import repairs, routing
from services.migrant_exchange.domain.routing import Whereabouts
from services.migrant_exchange.service_layer import disclosures
from services.migrant_exchange.settings import ExchangeSettings
from shared import agreements
from shared.consumer_admission import trust_list
from shared.errors import Conflict
from shared.events import payloads as p
from shared.events.envelope import Envelope
from shared.events.restriction import restrict
from shared.events.signature import NOT_AUTHORIZED, Rejected
from shared.events.upcasting import current_type
from shared.identity import subject_key
from shared.observability import redact
from shared.outbox import add_event, batched, queue_event
from shared.sealing import notification_aad, notification_named, notification_plaintext, seal
from shared.sensitivity import is_restricted, is_sensitive, neutral_text

EXCHANGE_SOURCE = "/exchange"
REPAIR_TYPE = routing.CORRECTION  # what a reconciliation repair travels as


async def route_vital_event(
    conn: asyncpg.Connection, settings: ExchangeSettings, event: Envelope[Any]
) -> int:
    """Update the roster and notify every counterpart jurisdiction the agreements allow. Returns how many."""
    producer = event.producer
    if producer is None:
        return 0
    data = event.data.model_dump(mode="json")
    before = await repo.whereabouts(conn, event.subject)
    check_her_registry(producer, event.type, before)
    after = routing.after_event(
        before, event.type, data, Whereabouts(event.origin, event.destination), event.time
    )
    await repo.save_whereabouts(conn, event.subject, after, event.type.startswith("migration."), event.time)
    secret = settings.subject_key_secret.get_secret_value().encode()
    others = [subject_key(n, secret) for n in routing.related_people(event.type, data)]
    others = [s for s in others if s != event.subject]
    related = await repo.whereabouts_of(conn, others) if others else []
    holders = await _holders(conn, event.type, data)
    if event.type in routing.ENDS and holders and producer not in holders:
        # Known holders and the producer not among them: it speaks of a record it does not have.
        # (A record routed before the exchange kept holders has none known, and goes as it comes.)
        raise Rejected(NOT_AUTHORIZED, f"{event.type} of a record {producer} does not hold")
    made = routing.made_record(event.type, data)
    if made is not None and not made_by(producer, await repo.holders_of(conn, *made)):
        raise Rejected(NOT_AUTHORIZED, f"{event.type} under the key of a record {producer} does not hold")
    targets = routing.counterparts(producer, event.type, data, after, tuple(related), holders)
    repair = (
        await cases.case_of_repair(conn, data.get("correction_id")) if event.type == REPAIR_TYPE else None
    )
    if repair is not None and not repairs_case(repair, producer, event.subject, data, secret):
        repair = None  # routed as the correction it is, but it resolves no case
    if repair is not None:  # a reconciliation repair reaches the side it is for, whatever the roster says
        targets.add(repair["resolution"]["target"])
    sent: dict[str, uuid.UUID] = {}
    notes: list[dict[str, Any]] = []  # the notifications sent, for their disclosures
    due = 0  # the notifications the agreements let flow: written now, or by a replay before
    for target in sorted(targets):
        notification = await _notification(conn, settings, event, data, target)
        if notification is None:
            continue
        due += 1
        if await repo.insert_notification(conn, notification):
            await publish(conn, settings, notification, event.traceparent)
            sent[target] = notification["notification_id"]
            notes.append(notification)
    await disclosures.publish(conn, [disclosures.notified(event, n, after) for n in notes])
    await _add_holders(conn, producer, event.type, data, sent, replayed=due > 0 and not sent)
    if repair is not None:
        target = repair["resolution"]["target"]
        why = None if target in sent else f"no agreement lets {REPAIR_TYPE} flow from {producer} to {target}"
        await cases.repair_routed(conn, repair["repair_id"], sent.get(target), why)
    return len(sent)


def check_her_registry(producer: str, event_type: str, before: Whereabouts) -> None:
    """Refuse a pregnancy registered by a registry that is neither her hukou nor her residence on
    the roster as it was before this event (``routing.by_her_registry``): a registry that skips its
    own route's rule would otherwise have her pregnancy sent to her two registries and hold it."""
    if not routing.by_her_registry(producer, event_type, before):
        raise Rejected(NOT_AUTHORIZED, f"{event_type} from {producer}, neither her hukou nor her residence")


def made_by(producer: str, holders: set[str]) -> bool:
    """Whether ``producer`` may announce the making of a record with these holders: a record not
    held yet (a new key), or one it holds."""
    return not holders or producer in holders


def repairs_case(
    case: Mapping[str, Any], producer: str, subject: str, data: Mapping[str, Any], secret: bytes
) -> bool:
    """Whether a correction carrying a case's repair id is that repair: sent by the registry asked
    to send it, about the case's person, kind of record and record (``repairs.names_case_record``).
    Anything else would have the case resolved by the counterpart's answer to another record (one
    it holds as sent is ``applied``), while the case's record stays wrong."""
    sender: str = case["resolution"]["sender"]
    return (
        sender == producer
        and case["subject"] == subject
        and case["record_kind"] == data.get("record_type")
        and repairs.names_case_record(case, data, lambda n: subject_key(n, secret))
    )


async def _holders(conn: asyncpg.Connection, event_type: str, data: dict[str, Any]) -> set[str]:
    """Who holds the record this event ends or corrects (``routing.named_record``): the registry
    that recorded it and those it was sent to. A pregnancy's closure takes them: once it is closed
    out the exchange forgets where it was kept (if the closure is refused, its rollback keeps
    them)."""
    named = routing.named_record(event_type, data)
    if named is None:
        return set()
    if event_type == "pregnancy.closed.v1":
        return await repo.take_holders(conn, *named)
    return await repo.holders_of(conn, *named)


async def _add_holders(
    conn: asyncpg.Connection,
    producer: str,
    event_type: str,
    data: dict[str, Any],
    sent: Iterable[str],
    replayed: bool,
) -> None:
    """The record this event makes or ends (``routing.held_record``) is held from now on by its
    producer and by those it was just sent to. One sent to nobody (she lived at her hukou alone,
    say) is held by its producer alone: known holders, so that its correction or its end, once she
    has moved, does not go to her places of then, which were never given it. A replay (its
    notifications were all written before: ``replayed``) sends nothing new, and adds nobody: a
    record routed before holders were kept stays with none known."""
    held = routing.held_record(event_type, data)
    if held is not None and not replayed:
        await repo.add_holders(conn, [(*held, division) for division in {*sent, producer}])


async def _notification(
    conn: asyncpg.Connection,
    settings: ExchangeSettings,
    event: Envelope[Any],
    data: dict[str, Any],
    target: str,
) -> dict[str, Any] | None:
    """The notification of this event for ``target`` under their agreement, or None if none lets it flow.

    The agreement's field restriction for this direction is applied here, and the notification
    names the withheld fields: the receiver validates the payload without exactly those."""
    return notification_under(
        await repo.agreement(conn, str(event.producer), target), settings, event, data, target
    )


def notification_under(
    row: asyncpg.Record | None,
    settings: ExchangeSettings,
    event: Envelope[Any],
    data: dict[str, Any],
    target: str,
) -> dict[str, Any] | None:
    """``_notification`` with the agreement between the event's producer and ``target`` read."""
    if row is None or not routing.covers(row["event_types"], event.type):
        return None
    sides = (row["division_a"], row["division_b"])
    withheld = agreements.withheld(row["visible_fields"], sides, target, event.type)
    payload = restrict(data, withheld)
    if event.type == REPAIR_TYPE:  # a repair carries no more than the record's own event would
        agreed = routing.agreed_correction(
            payload, lambda t: agreements.withheld(row["visible_fields"], sides, target, current_type(t))
        )
        if agreed is None:
            return None
        payload = agreed
    now = dt.datetime.now(dt.UTC)
    return {
        "notification_id": uuid.uuid4(),
        "target_division": target,
        "source_division": str(event.producer),
        "subject": event.subject,
        "event_id": event.id,
        "event_type": event.type,
        "event_sequence": event.sequence,
        "event_time": event.time,
        "payload": payload,
        "withheld_fields": sorted(withheld),
        # a pregnancy, or a correction of one: operators see it by the neutral category (views)
        "restricted": is_restricted(event.type, data),
        "deadline": now + dt.timedelta(seconds=row["deadline_seconds"] or settings.feedback_deadline_seconds),
        "next_attempt_at": now + dt.timedelta(seconds=settings.notification_retry_seconds),
    }


async def publish(
    conn: asyncpg.Connection, settings: ExchangeSettings, n: dict[str, Any], traceparent: str | None = None
) -> None:
    """Queue ``exchange.notification.v1`` for the addressee (each send is a new event id).

    The payload goes sealed to the addressee's encryption key in the trust list: every other
    reader of the broker, jurisdictions included, sees ciphertext. An addressee without a key
    (a REST-only jurisdiction) gets no payload on Kafka at all; it fetches it over REST. A
    restricted event (a pregnancy, or a correction of one) is named by the neutral category only,
    its real type and withheld fields sealed with the payload (``shared.sealing.notification_named``);
    the exchange's own row keeps the real type, for routing, re-sends and the addressee's REST pick-up.
    """
    fields = p.ExchangeNotificationV1.model_fields
    named, withheld = notification_named(n["event_type"], list(n["withheld_fields"]), n["payload"])
    clear = {k: v for k, v in n.items() if k in fields and k != "payload"}
    clear |= {"event_type": named, "withheld_fields": withheld}
    target = n["target_division"]
    key = trust_list(settings.trust_list_file).encryption_key(target, dt.datetime.now(dt.UTC))
    sealed = None
    if key is not None:
        aad = notification_aad(n["notification_id"], target, named)
        plaintext = notification_plaintext(n["event_type"], list(n["withheld_fields"]), n["payload"])
        sealed = seal(plaintext, key.kid, key.raw, aad)
    await queue_event(
        conn,
        event_type="exchange.notification.v1",
        source=EXCHANGE_SOURCE,
        subject=n["subject"],
        data=p.ExchangeNotificationV1(**clear, sealed=sealed),
        origin=n["source_division"],
        destination=n["target_division"],
        traceparent=traceparent,
        key=f"{n['target_division']}:{n['subject']}",
    )


async def resend_unanswered(conn: asyncpg.Connection, settings: ExchangeSettings) -> int:
    """Send again the notifications that got no feedback yet, with exponential backoff; how many.

    A re-send carries the same notification id under a new event id, so a counterpart that
    lost the first one applies it (its records are idempotent) and answers; one that already
    answered answers again, and the second answer changes nothing here. A notification whose
    agreement was removed since (or no longer lets its type flow) is not sent again: it waits
    for an answer to what was sent, and goes overdue at its deadline.
    """
    rows = await delivery.due_for_resend(conn, settings.notification_max_attempts)
    async with batched(conn):  # the re-sends written together
        return await _resend(conn, settings, rows)


async def _resend(conn: asyncpg.Connection, settings: ExchangeSettings, rows: list[asyncpg.Record]) -> int:
    now = dt.datetime.now(dt.UTC)
    sent = 0
    for row in rows:
        agreed = await repo.agreement(conn, row["source_division"], row["target_division"])
        if agreed is None or not routing.covers(agreed["event_types"], row["event_type"]):
            await delivery.mark_resent(conn, row["id"], None, sent=False)
            continue
        n = {**dict(row), "notification_id": row["id"]}
        await publish(conn, settings, n)
        attempts = row["attempts"] + 1
        delay = routing.retry_delay(
            settings.notification_retry_seconds, attempts, settings.notification_retry_cap_seconds
        )
        next_at = (
            None if attempts >= settings.notification_max_attempts else now + dt.timedelta(seconds=delay)
        )
        await delivery.mark_resent(conn, row["id"], next_at)
        sent += 1
    return sent


async def record_feedback(conn: asyncpg.Connection, feedback: p.ExchangeFeedbackV1) -> bool:
    """Close the notification the feedback answers (idempotent: a second answer changes nothing).

    Authority: only the notification's target answers it. The envelope check already tied
    ``from_division`` to the signer; feedback for a notification addressed to someone else is
    refused (and dead-lettered by the consumer), not silently dropped.
    """
    notification = await repo.get_notification(conn, feedback.notification_id)
    if notification is not None and notification["target_division"] != feedback.from_division:
        raise Rejected(NOT_AUTHORIZED, "feedback from a division the notification was not addressed to")
    if notification is not None and restricted_row(notification["event_type"], notification["restricted"]):
        feedback = (
            feedback.withheld()
        )  # an answer in the old form, or over REST: kept as upgraded ones send it
    closed = await repo.close_notification(
        conn,
        feedback.notification_id,
        feedback.from_division,
        feedback.outcome,
        [c.model_dump() for c in feedback.conflicts],
        feedback.reason,
    )
    if closed:
        await cases.repair_answered(conn, feedback.notification_id, feedback.outcome, why(feedback))
    return closed


def restricted_row(event_type: str, restricted: bool | None) -> bool:
    """Whether a notification (its row's event type and ``restricted`` mark) carries a restricted
    event: its answer is kept and relayed withheld (``p.ExchangeFeedbackV1.withheld``), whatever
    form it came in, since the exchange is not one of her two registries."""
    return is_sensitive(event_type) or bool(restricted)


def answers(event: Envelope[Any]) -> list[p.ExchangeFeedbackV1]:
    """The answers a feedback event gives: itself, or each of a batch's (``exchange.feedback_batch.v1``)."""
    data = event.data
    return data.feedback() if isinstance(data, p.ExchangeFeedbackBatchV1) else [data]


@dataclass(frozen=True, slots=True)
class AnswerOverRest:
    """The answer of a jurisdiction not on Kafka (``division``) to a notification addressed to it."""

    notification_id: uuid.UUID
    division: str | None
    outcome: Literal["applied", "conflict", "rejected"]
    conflicts: list[p.FieldConflict]
    reason: str | None


async def answer_over_rest(conn: asyncpg.Connection, answer: AnswerOverRest) -> asyncpg.Record | None:
    """Close the notification as ``record_feedback`` does and relay the answer to the sender as
    ``exchange.feedback.v1``; the notification as it now is, None when no notification with this
    id is addressed to the division.

    A notification is answered once. The same answer again (a retry whose response was lost) is
    answered with the notification as it is and relays nothing; another answer is a conflict:
    the sender was told the first one already.

    The answer to a restricted notification (a pregnancy, a correction of one) is kept and
    relayed withheld (``p.ExchangeFeedbackV1.withheld``), as its registry answers one on Kafka: no
    conflicting field or value and a neutral reason, here (the exchange is not one of her two
    registries) and on the broker beside her subject key. The outcome stands.
    """
    row = await repo.get_notification(conn, answer.notification_id)
    if row is None or row["target_division"] != answer.division:
        return None
    feedback = p.ExchangeFeedbackV1(
        notification_id=answer.notification_id,
        from_division=row["target_division"],
        outcome=answer.outcome,
        conflicts=answer.conflicts,
        reason=answer.reason,
        applied_at=dt.datetime.now(dt.UTC),
    )
    if restricted_row(row["event_type"], row["restricted"]):
        feedback = feedback.withheld()
    if not await record_feedback(conn, feedback):  # answered before (over REST or on Kafka)
        answered = await repo.get_notification(conn, answer.notification_id)
        state = answered["state"] if answered is not None else "before"
        if state == answer.outcome:
            return answered
        raise Conflict(
            f"the notification was answered {state} already; an answer is given once",
            field="outcome",
            rule="answered-once",
        )
    await add_event(
        conn,
        event_type="exchange.feedback.v1",
        source=EXCHANGE_SOURCE,  # the exchange relays it; registry sources number their own events
        subject=row["subject"],
        data=feedback,
        origin=row["target_division"],
        destination=row["source_division"],
    )
    return await repo.get_notification(conn, answer.notification_id)  # read back in the same transaction


def why(feedback: p.ExchangeFeedbackV1) -> str | None:
    """What an operator may read of a refusal: the reason and the fields, never their values."""
    if feedback.outcome == "applied":
        return None
    text = f"{feedback.outcome}: {feedback.reason or 'no reason given'}"
    if feedback.conflicts:
        text += " (fields: " + ", ".join(sorted({c.field for c in feedback.conflicts})) + ")"
    return redact(neutral_text(text))[:500]
