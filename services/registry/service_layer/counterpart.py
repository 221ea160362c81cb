"""Applying notifications from counterpart jurisdictions, and answering them with feedback.

What a counterpart tells us lands in the same tables as our own records, marked with the
source division and event id, so each side's view of its migrants is complete.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from pydantic import ValidationError

from services.registry.adapters import repository as repo
from services.registry.domain import rules
from services.registry.domain.births import birth_record
from services.registry.service_layer import counterpart_family as fam
from services.registry.settings import RegistrySettings
from shared.consumer import forget_applied
from shared.events import payloads as p
from shared.events.catalog import spec_for
from shared.events.envelope import Envelope
from shared.events.restriction import NotWithholdable, restricted_model
from shared.events.upcasting import current_field, upcast_data
from shared.identity import birth_date_of, subject_key
from shared.outbox import add_event
from shared.sealing import CannotOpen, notification_aad, open_sealed
from shared.trust import keyring_of

log = logging.getLogger(__name__)

BIRTH_FIELDS = ("child_name", "child_sex", "child_birth_date", "mother_id_number", "birth_order")
Outcome = tuple[str, list[dict[str, Any]], str | None]  # outcome, conflicts, reason
Applier = Callable[[asyncpg.Connection, "_Target", dict[str, Any]], Awaitable[Outcome]]


async def apply_notification(
    conn: asyncpg.Connection, settings: RegistrySettings, event: Envelope[p.ExchangeNotificationV1]
) -> None:
    """Apply one notification addressed to a jurisdiction this registry serves, then answer it."""
    n = event.data
    try:
        event_type, data = _validated(n, _payload(settings, n))
        target = _Target(
            n.target_division,
            n.source_division,
            n.event_id,
            settings.subject_key_secret.get_secret_value().encode(),
        )
        outcome, conflicts, reason = await _apply(conn, target, event_type, data)
    except CannotOpen as e:
        outcome, conflicts, reason = "rejected", [], f"cannot read {n.event_type}: {e}"
    except NotWithholdable as e:
        outcome, conflicts, reason = "rejected", [], f"cannot apply {n.event_type}: {e}"
    except (ValidationError, KeyError, ValueError) as e:
        outcome, conflicts, reason = "rejected", [], f"cannot apply {n.event_type}: {type(e).__name__}"
    feedback = p.ExchangeFeedbackV1(
        notification_id=n.notification_id,
        from_division=n.target_division,
        outcome=outcome,
        conflicts=[p.FieldConflict(**c) for c in conflicts],
        reason=reason,
        applied_at=dt.datetime.now(dt.UTC),
    )
    await add_event(
        conn,
        event_type="exchange.feedback.v1",
        source=f"/registry/{n.target_division}",
        subject=event.subject,
        data=feedback,
        origin=n.target_division,
        destination=n.source_division,
        traceparent=event.traceparent,
    )


def _validated(n: p.ExchangeNotificationV1, payload: Any) -> tuple[str, dict[str, Any]]:
    """The payload as the current version of its type, checked against its contract.

    Upcast after the envelope's signature was checked (the consumer did): an older version still
    in flight is applied as the current one (``shared.events.upcasting``). The fields the
    notification says the agreement withholds may (only) be absent, each must be one the
    contract lets go, and every other field keeps its rule."""
    event_type, raw = upcast_data(n.event_type, payload)
    withheld = frozenset(current_field(n.event_type, f) for f in n.withheld_fields)
    model = restricted_model(spec_for(event_type).payload, withheld)
    data: dict[str, Any] = model.model_validate(raw).model_dump()
    return event_type, data


def _payload(settings: RegistrySettings, n: p.ExchangeNotificationV1) -> Any:
    """The notification's payload: opened with this registry's key when it came sealed."""
    if n.sealed is None:
        return n.payload
    keys = keyring_of(settings.event_keys_file).decryption_keys(n.target_division)
    aad = notification_aad(n.notification_id, n.target_division, n.event_type)
    return orjson.loads(open_sealed(n.sealed, keys, aad))


@dataclass(frozen=True)
class _Target:
    """The receiving jurisdiction, who sent the event, and which event it was."""

    here: str
    source: str
    event_id: uuid.UUID
    secret: bytes

    def subject(self, id_number: str) -> str:
        return subject_key(id_number, self.secret)


async def _apply(conn: asyncpg.Connection, t: _Target, event_type: str, d: dict[str, Any]) -> Outcome:
    """The notified event applied to our records through ``APPLIERS``; refused if it has no entry."""
    applier = APPLIERS.get(event_type)
    if applier is None:
        return "rejected", [], f"{event_type} is not applied by this registry"
    return await applier(conn, t, d)


async def _apply_person(conn: asyncpg.Connection, t: _Target, d: dict[str, Any]) -> Outcome:
    # Sex and birth date may be withheld by an agreement: the identity number carries both.
    d = {
        **d,
        "sex": d["sex"] or rules.sex_from_id_number(d["id_number"]),
        "birth_date": d["birth_date"] or birth_date_of(d["id_number"]),
    }
    existing = await repo.get_person(conn, t.here, d["id_number"])
    if existing is None:
        await repo.insert_person(conn, t.here, d, t.subject(d["id_number"]), t.source, t.event_id)
        return "applied", [], None
    conflicts = rules.birth_conflicts(dict(existing), d, ("name", "sex", "birth_date", "hukou_division"))
    return (
        ("conflict", conflicts, "the person is recorded here with other details")
        if conflicts
        else ("applied", [], None)
    )


def _migration(kind: str) -> Applier:
    """The applier of one kind of move (``migration.<kind>.v1``)."""

    async def apply(conn: asyncpg.Connection, t: _Target, d: dict[str, Any]) -> Outcome:
        return await _apply_migration(conn, t, kind, d)

    return apply


async def _apply_migration(conn: asyncpg.Connection, t: _Target, kind: str, d: dict[str, Any]) -> Outcome:
    id_number = d["id_number"]
    known = await repo.residence(conn, t.here, id_number)
    await repo.insert_person(
        conn,
        t.here,
        {
            "id_number": id_number,
            "name": d["name"],
            "sex": rules.sex_from_id_number(id_number),
            "birth_date": birth_date_of(id_number),
            "hukou_division": d["hukou_division"],
            "residence_division": d["to_division"],
        },
        t.subject(id_number),
        t.source,
        t.event_id,
    )
    newest = known is None or known.last_move_date is None or d["migration_date"] >= known.last_move_date
    # A move older than one already recorded (a late, out-of-order notification) is kept in the
    # history but must not overwrite where the person lives now.
    if await repo.insert_migration(conn, t.here, d, kind, t.source, t.event_id) and newest:
        await repo.set_residence(conn, t.here, id_number, d["to_division"])
    return "applied", [], None


async def _apply_birth(conn: asyncpg.Connection, t: _Target, payload: dict[str, Any]) -> Outcome:
    d = birth_record(payload)
    here = t.here
    same = await repo.birth_by_certificate(conn, here, d["medical_certificate_number"])
    if same is not None:
        conflicts = rules.birth_conflicts(dict(same), d, BIRTH_FIELDS)
        return (
            ("conflict", conflicts, "this birth is recorded here with other details")
            if conflicts
            else ("applied", [], None)
        )
    for other in await repo.births_of_mother(conn, here, d["mother_id_number"]):
        if other["child_birth_date"] == d["child_birth_date"] and other["child_name"] != d["child_name"]:
            conflicts = rules.birth_conflicts(dict(other), d, ("medical_certificate_number", *BIRTH_FIELDS))
            return "conflict", conflicts, "another birth is recorded here for this mother and date"
        if other["birth_order"] == d["birth_order"]:
            conflicts = rules.birth_conflicts(dict(other), d, ("medical_certificate_number", *BIRTH_FIELDS))
            return "conflict", conflicts, "another birth of this mother has this birth order here"
    await repo.insert_birth(conn, here, d, t.source, t.event_id)
    return "applied", [], None


async def forget_counterpart_records(
    conn: asyncpg.Connection, served: list[str], consumer: str
) -> dict[str, Any]:
    """Delete what counterparts told the served jurisdictions, and the notification consumer's
    inbox, so that ``exchangectl replay counterpart`` applies every notification again through
    ``apply_notification``. The registry's own records (source division = jurisdiction) stay."""
    inbox = await forget_applied(conn, consumer)  # the inbox lock first: see forget_applied
    return {**await repo.delete_counterpart_records(conn, served), "inbox": inbox}


# What each notified event type does to our records: the registry's counterpart appliers. A
# reconciliation repair arrives as ``record.corrected.v1`` and is applied by the same entry.
# Authority beyond the envelope's (the exchange, to a division served here): a correction
# changes only records the correcting jurisdiction is the source of (``fam.apply_correction``).
APPLIERS: dict[str, Applier] = {
    "person.registered.v1": _apply_person,
    "migration.departed.v1": _migration("departed"),
    "migration.arrived.v1": _migration("arrived"),
    "migration.returned.v1": _migration("returned"),
    "birth.registered.v2": _apply_birth,
    "marriage.registered.v1": fam.apply_marriage,
    "marriage.dissolved.v1": fam.apply_dissolution,
    "pregnancy.registered.v1": fam.apply_pregnancy,
    "pregnancy.closed.v1": fam.apply_pregnancy_closed,
    "record.corrected.v1": fam.apply_correction,
    # The issuer's register is authoritative and verification keeps its own read model; the copy
    # kept here is what reconciliation compares.
    "certificate.issued.v1": fam.apply_certificate_issued,
    "certificate.revoked.v1": fam.apply_certificate_revoked,
}
