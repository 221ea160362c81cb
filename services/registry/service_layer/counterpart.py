"""Applying notifications from counterpart jurisdictions, and answering them with feedback.

What a counterpart tells us lands in the same tables as our own records, marked with the
source division and event id, so each side's view of its migrants is complete.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import asyncpg
from pydantic import ValidationError

from services.registry.adapters import persons, records
from services.registry.service_layer import (
    births,
    certificates,
    corrections,
    marriages,
    migrations,
    pregnancies,
    repairs,
)
from services.registry.service_layer.context import Applier, Outcome, Target, applied, rejected
from services.registry.service_layer.persons import apply_person
from services.registry.settings import RegistrySettings
from shared.errors import fault_text, request_fault
from shared.events import payloads as p
from shared.events.catalog import spec_for
from shared.events.envelope import Envelope
from shared.events.restriction import NotWithholdable, restricted_model
from shared.events.upcasting import current_field, upcast_data
from shared.inbox import forget_applied
from shared.outbox import queue_event
from shared.sealing import CannotOpen, notification_aad, notification_contents, open_sealed
from shared.sensitivity import NEUTRAL_CATEGORY, is_restricted, neutral_text, withheld_reason
from shared.trust import keyring_of

log = logging.getLogger(__name__)

FEEDBACK_BATCH = "exchange.feedback_batch.v1"
# Answers per batch event: ~0.15 KB of JSON each (a plain ``applied`` carries no values).
FEEDBACK_ANSWERS = 500
# Batches are numbered apart from the registry's events about people: each is keyed by its own
# id, and the exchange orders a registry's events per person (``shared.disclosures`` likewise).
FEEDBACK_SEQUENCE_SPACE = "#feedback"


async def apply_notification(
    conn: asyncpg.Connection, settings: RegistrySettings, event: Envelope[p.ExchangeNotificationV1]
) -> None:
    """Apply one notification addressed to a jurisdiction this registry serves, then answer it.

    Rows our tables refuse (a constraint the domain checks did not catch, a value PostgreSQL
    cannot hold: ``shared.errors.request_fault``) are the notification's own fault, which no retry
    mends: they are rolled back and the notification is answered ``rejected``, naming the rule.
    The database's own trouble (unreachable, a deadlock, a timeout) is raised, for the consumer
    to retry.

    The answer to a restricted notification gives no conflicting field or value and a neutral
    reason (``_as_told``)."""
    n = event.data
    restricted = is_restricted(n.event_type, n.payload)  # as named in clear, if it is not opened
    try:
        target, event_type, data = _opened(settings, n)
        restricted = restricted or is_restricted(event_type, data)
        outcome = await _apply_or_roll_back(conn, target, event_type, data)
    except (CannotOpen, NotWithholdable, ValidationError, KeyError, ValueError) as e:
        outcome = rejected(_why_not(n, e))
    except Exception as e:
        if request_fault(e) is None:
            raise
        outcome = rejected(_why_not(n, e))
    await _answer(conn, event, _as_told(outcome, restricted))


async def _apply_or_roll_back(
    conn: asyncpg.Connection, t: Target, event_type: str, d: dict[str, Any]
) -> Outcome:
    """``_apply`` in a savepoint: rows our tables refuse leave nothing behind. A key taken by a
    transaction we waited for is a race, not a refusal: the second look, after it committed,
    sees its row and answers as for any record already here."""
    try:
        async with conn.transaction():
            return await _apply(conn, t, event_type, d)
    except asyncpg.IntegrityConstraintViolationError:
        async with conn.transaction():
            return await _apply(conn, t, event_type, d)


async def apply_notifications(
    conn: asyncpg.Connection, settings: RegistrySettings, events: list[Envelope[p.ExchangeNotificationV1]]
) -> None:
    """``apply_notification`` for a consumer's batch, in order: each run of moves (most of the
    traffic) in a few statements (``migrations.apply_migrations``), any other notification by
    its applier. A notification that cannot be opened or applied raises here, and the consumer
    applies the batch again one by one, where it is answered as rejected.

    The people the notifications touch are locked first, all at once and in key order, when more
    than one run touches anyone (``_lock_people_first``)."""
    opened = [(event, *_opened(settings, event.data)) for event in events]
    await _lock_people_first(conn, [(target, event_type, data) for _, target, event_type, data in opened])
    moves: list[tuple[Envelope[p.ExchangeNotificationV1], migrations.Move]] = []
    answered: list[tuple[Envelope[p.ExchangeNotificationV1], Outcome]] = []
    for event, target, event_type, data in opened:
        kind = migrations.KINDS.get(event_type)
        if kind is not None:
            moves.append((event, (target, kind, data)))
            continue
        answered += await _apply_moves(conn, moves)
        outcome = await _apply(conn, target, event_type, data)
        answered.append((event, _as_told(outcome, is_restricted(event_type, data))))
    answered += await _apply_moves(conn, moves)
    await _answer_all(conn, answered)


# Whose records applying a notified event writes or checks under lock: the people its payload
# names in these fields, or the people of the record of ours it acts on, as (record type, the
# payload's field of its key). A certificate's copy here is no record of a person's row.
_PEOPLE_NAMED: dict[str, tuple[str, ...]] = {
    "person.registered.v1": ("id_number",),
    **{event_type: ("id_number",) for event_type in migrations.KINDS},
    "birth.registered.v2": ("mother_id_number",),
    "marriage.registered.v1": ("spouse_a_id_number", "spouse_b_id_number"),
    "pregnancy.registered.v1": ("mother_id_number",),
}
_RECORD_NAMED: dict[str, tuple[str, str]] = {
    "marriage.dissolved.v1": ("marriage", "marriage_id"),
    "pregnancy.closed.v1": ("pregnancy", "pregnancy_id"),
}


def _touches(t: Target, event_type: str, d: dict[str, Any]) -> list[tuple[str, str, object]]:
    """The records, as (type, jurisdiction, key), whose people applying the event locks."""
    touched: list[tuple[str, str, object]] = [
        ("person", t.here, d[f]) for f in _PEOPLE_NAMED.get(event_type, ()) if d.get(f)
    ]
    named = _RECORD_NAMED.get(event_type)
    if named is not None:
        record = (named[0], str(d.get(named[1])))
    elif event_type == "record.corrected.v1":
        record = (str(d.get("record_type")), str(d.get("record_id")))
    else:
        return touched
    key = records.record_key(*record)  # its key as the table holds it (a uuid), or None
    if key is not None:
        touched.append((record[0], t.here, key))
    return touched


async def _lock_people_first(
    conn: asyncpg.Connection, events: list[tuple[Target, str, dict[str, Any]]]
) -> None:
    """Lock the rows of the people a unit of work's notifications touch, in key order, before
    applying any (``persons.lock_people_of``), as a registrar's batch does
    (``service_layer.batches``). Applied in the notifications' order, an arrival of Y, then
    something of Z, then an arrival of X took Y, waited for Z, then for X, while a batch about X
    and Y held X and waited for Y: a deadlock, one of them rolled back (the batch answered 503).
    A run of moves alone locks its people in key order already (``migrations.apply_migrations``):
    no statement more for a unit of moves only, as most are. A person the unit registers or first
    records by an arrival is locked by her key instead of her row (``persons._LOCK_PEOPLE``)."""
    touched: list[tuple[str, str, object]] = []
    runs, in_moves = 0, False
    for t, event_type, d in events:
        found = _touches(t, event_type, d)
        moving = event_type in migrations.KINDS
        runs += bool(found) and not (moving and in_moves)
        in_moves = moving
        touched += found
    if runs > 1:
        await persons.lock_people_of(conn, touched)


async def _apply_moves(
    conn: asyncpg.Connection, moves: list[tuple[Envelope[p.ExchangeNotificationV1], migrations.Move]]
) -> list[tuple[Envelope[p.ExchangeNotificationV1], Outcome]]:
    """The moves gathered so far applied, with their outcomes; the list is emptied."""
    if not moves:
        return []
    outcomes = await migrations.apply_migrations(conn, [move for _, move in moves])
    done = [(event, outcome) for (event, _), outcome in zip(moves, outcomes, strict=True)]
    moves.clear()
    return done


def _opened(settings: RegistrySettings, n: p.ExchangeNotificationV1) -> tuple[Target, str, dict[str, Any]]:
    """Whom the notification is for and from, and the event it carries, opened and checked."""
    event_type, data = _validated(*_contents(settings, n))
    secret = settings.subject_key_secret.get_secret_value().encode()
    return Target(n.target_division, n.source_division, n.event_id, secret), event_type, data


def _why_not(n: p.ExchangeNotificationV1, e: Exception) -> str:
    """Why it was refused, naming the type as the notification names it (a sensitive one neutral)."""
    if isinstance(e, CannotOpen):
        return f"cannot read {n.event_type}: {e}"
    if isinstance(e, NotWithholdable):
        return f"cannot apply {n.event_type}: {e}"
    if request_fault(e) is not None:  # by class, SQLSTATE and constraint: the driver's text quotes the row
        # a constraint's name may say "pregnancies"
        return neutral_text(f"cannot apply {n.event_type}: our records refuse it ({fault_text(e)})")
    return f"cannot apply {n.event_type}: {type(e).__name__}"


async def _answer_all(
    conn: asyncpg.Connection, answered: list[tuple[Envelope[p.ExchangeNotificationV1], Outcome]]
) -> None:
    """Queue the feedback of a unit of work's notifications: the plain ``applied`` answers as one
    ``exchange.feedback_batch.v1`` per pair of jurisdictions (at most ``FEEDBACK_ANSWERS`` each),
    where there are several; a lone answer, and every conflict or refusal, as its own
    ``exchange.feedback.v1`` under its person's key and trace."""
    plain: dict[tuple[str, str], list[tuple[Envelope[p.ExchangeNotificationV1], Outcome]]] = {}
    for event, outcome in answered:
        if outcome == applied():
            plain.setdefault((event.data.target_division, event.data.source_division), []).append(
                (event, outcome)
            )
        else:
            await _answer(conn, event, outcome)
    now = dt.datetime.now(dt.UTC)
    for (target, source), group in plain.items():
        if len(group) == 1:
            await _answer(conn, *group[0])
            continue
        for start in range(0, len(group), FEEDBACK_ANSWERS):
            batch = p.ExchangeFeedbackBatchV1(
                batch_id=uuid.uuid4(),
                from_division=target,
                answers=[
                    p.FeedbackAnswerV1(
                        notification_id=e.data.notification_id, outcome="applied", applied_at=now
                    )
                    for e, _ in group[start : start + FEEDBACK_ANSWERS]
                ],
            )
            await queue_event(
                conn,
                event_type=FEEDBACK_BATCH,
                source=f"/registry/{target}",
                subject=batch.batch_id.hex,
                data=batch,
                origin=target,
                destination=source,
                numbered_in=f"/registry/{target}{FEEDBACK_SEQUENCE_SPACE}",
            )


def _as_told(outcome: Outcome, restricted: bool) -> Outcome:
    """The answer as it goes on the broker, beside her subject key, on a topic its readers read:
    of a restricted notification (a pregnancy, a correction of one), a conflict without its fields
    and values (a differing ``expected_delivery``, ours and theirs) and a reason without the word
    that names the kind (``shared.sensitivity.withheld_reason``). The detail stays here: our
    record keeps our value, the sender's its own, and reconciliation compares the two."""
    status, conflicts, reason = outcome
    if not restricted or (not conflicts and reason is None):
        return outcome
    return status, [], withheld_reason(reason, bool(conflicts))


def _feedback(event: Envelope[p.ExchangeNotificationV1], outcome: Outcome) -> p.ExchangeFeedbackV1:
    """The answer to one notification."""
    n = event.data
    status, conflicts, reason = outcome
    return p.ExchangeFeedbackV1(
        notification_id=n.notification_id,
        from_division=n.target_division,
        outcome=status,
        conflicts=[p.FieldConflict(**c) for c in conflicts],
        reason=reason,
        applied_at=dt.datetime.now(dt.UTC),
    )


async def _answer(
    conn: asyncpg.Connection, event: Envelope[p.ExchangeNotificationV1], outcome: Outcome
) -> None:
    """Queue the feedback that tells the notifying side what became of its event."""
    n = event.data
    feedback = _feedback(event, outcome)
    await queue_event(
        conn,
        event_type="exchange.feedback.v1",
        source=f"/registry/{n.target_division}",
        subject=event.subject,
        data=feedback,
        origin=n.target_division,
        destination=n.source_division,
        traceparent=event.traceparent,
    )


def _validated(event_type: str, withheld_fields: list[str], payload: Any) -> tuple[str, dict[str, Any]]:
    """The payload as the current version of its type, checked against its contract.

    Upcast after the envelope's signature was checked (the consumer did): an older version still
    in flight is applied as the current one (``shared.events.upcasting``). The fields the
    notification says the agreement withholds may (only) be absent, each must be one the
    contract lets go, and every other field keeps its rule."""
    current, raw = upcast_data(event_type, payload)
    withheld = frozenset(current_field(event_type, f) for f in withheld_fields)
    model = restricted_model(spec_for(current).payload, withheld)
    data: dict[str, Any] = model.model_validate(raw).model_dump()
    return current, data


def _contents(settings: RegistrySettings, n: p.ExchangeNotificationV1) -> tuple[str, list[str], Any]:
    """The event type, withheld fields and payload the notification carries: opened with this
    registry's key when it came sealed. A sensitive event is named ``vital.restricted`` in clear;
    its real type and withheld fields are read from the seal, which binds that name
    (``shared.sealing.notification_contents``)."""
    if n.sealed is None:
        if n.event_type == NEUTRAL_CATEGORY:
            raise CannotOpen("a restricted notification comes sealed")
        return n.event_type, list(n.withheld_fields), n.payload
    keys = keyring_of(settings.event_keys_file).decryption_keys(n.target_division)
    aad = notification_aad(n.notification_id, n.target_division, n.event_type)
    return notification_contents(open_sealed(n.sealed, keys, aad), n.event_type, list(n.withheld_fields))


async def _apply(conn: asyncpg.Connection, t: Target, event_type: str, d: dict[str, Any]) -> Outcome:
    """The notified event applied to our records through ``APPLIERS``; refused if it has no entry."""
    applier = APPLIERS.get(event_type)
    if applier is None:
        return rejected(f"{event_type} is not applied by this registry")
    return await applier(conn, t, d)


async def forget_counterpart_records(
    conn: asyncpg.Connection, served: list[str], consumer: str
) -> dict[str, Any]:
    """Delete what counterparts told the served jurisdictions (every record kind, and the
    corrections they applied: ``records.delete_counterpart_records``), and the notification
    consumer's inbox, so that ``exchangectl replay counterpart`` applies every notification again
    through ``apply_notification``. The registry's own records (source division = jurisdiction) stay."""
    inbox = await forget_applied(conn, consumer)  # the inbox lock first: see forget_applied
    return {**await records.delete_counterpart_records(conn, served), "inbox": inbox}


async def _apply_corrected(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    """``record.corrected.v1``: a repair of a reconciliation case (a whole record, or a duplicate
    retired) is ``repairs.apply_repair``'s; any other correction is a registrar's, applied by
    ``corrections.apply_correction``. Both change only records the sender is the source of; one
    noted here already (a re-send) changes nothing (``corrections.applied_before``)."""
    again = await corrections.applied_before(conn, t, d)
    if again is not None:
        return again
    repaired = await repairs.apply_repair(conn, t, d)
    return repaired if repaired is not None else await corrections.apply_correction(conn, t, d)


# What each notified event type does to our records: the registry's counterpart appliers, each
# beside its kind's own use cases in ``service_layer/<kind>.py``. A reconciliation repair arrives
# as ``record.corrected.v1`` and is applied by the same entry. Authority beyond the envelope's
# (the exchange, to a division served here): a correction changes only records the correcting
# jurisdiction is the source of (``corrections.apply_correction``, ``repairs.apply_repair``).
APPLIERS: dict[str, Applier] = {
    "person.registered.v1": apply_person,
    **{event_type: migrations.migration_applier(kind) for event_type, kind in migrations.KINDS.items()},
    "birth.registered.v2": births.apply_birth,
    "marriage.registered.v1": marriages.apply_marriage,
    "marriage.dissolved.v1": marriages.apply_dissolution,
    "pregnancy.registered.v1": pregnancies.apply_pregnancy,
    "pregnancy.closed.v1": pregnancies.apply_pregnancy_closed,
    "record.corrected.v1": _apply_corrected,
    # The issuer's register is authoritative and verification keeps its own read model; the copy
    # kept here is what reconciliation compares.
    "certificate.issued.v1": certificates.apply_certificate_issued,
    "certificate.revoked.v1": certificates.apply_certificate_revoked,
}
