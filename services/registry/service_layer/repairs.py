"""Repairs of reconciliation cases, as the sending and as the receiving registry carries them out.

Sending (``send_repair``, asked by the exchange for an operator's resolution): the side that
holds the record announces it whole as ``record.corrected.v1``, or retires its copy of a birth
registered twice and announces that. Receiving (``apply_repair``, a counterpart's correction
through the exchange): the record is applied by its exchange key, and the feedback says whether
it was. Authority (docs/trust.md): a record is changed or retired only on the word of the
jurisdiction it came from; a record missing here is taken from the sender as the sender's, unless
the correction names an event of our own, in which case it is our record coming back and must
agree with what our own log says of it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters import births, certificates, corrections, records
from services.registry.adapters import persons as person_records
from services.registry.adapters import reconciliation as recon
from services.registry.adapters import repairs as repo
from services.registry.adapters.records import Made
from services.registry.domain import repairs as rules
from services.registry.service_layer.context import Outcome, Target, rejected
from services.registry.service_layer.corrections import check_consistent
from services.registry.service_layer.migrations import residence_follows
from services.registry.service_layer.reconciliation import check_pair
from services.registry.settings import RegistrySettings
from shared.errors import DomainError, NotFound, RuleViolation
from shared.events import payloads as p
from shared.outbox import add_event


async def send_repair(
    conn: asyncpg.Connection, settings: RegistrySettings, body: dict[str, Any]
) -> dict[str, Any]:
    """Announce the record this side holds (``send``) or retire its duplicate (``retire``)."""
    here, other = body["jurisdiction"], body["counterpart"]
    check_pair(settings, here, other)
    kind, key, subject = body["kind"], body["key"], body["subject"]
    held = await recon.held_record(conn, here, other, subject, kind, key)
    if held is None:
        raise NotFound("this side does not hold the record", field="key", rule="record-held-here")
    rid, values = held
    row = await repo.held(conn, here, kind, rid)
    made_by = (row and (row["event_id"] or row.get("source_event_id"))) or body["repair_id"]
    if body["action"] == "retire":
        changes: dict[str, Any] = await _retire_here(conn, here, kind, rid, body.get("kept_key"), body)
    else:
        changes = rules.wire_values(kind, key, rid, values)
        if rules.whole_record(kind, changes) is None:
            raise RuleViolation(
                "the record as held here does not pass the exchange's validation",
                field="key",
                rule="record-valid",
            )
    hukou, residence = await recon.whereabouts(conn, here, subject)  # the exchange routes it to both
    event = await add_event(
        conn,
        event_type="record.corrected.v1",
        source=f"/registry/{here}",
        subject=subject,
        data=p.RecordCorrectedV1(
            correction_id=body["repair_id"],
            corrected_event_id=made_by,
            record_type=kind,
            record_id=rid,
            changes=changes,
            reason=f"repair of reconciliation case {body['discrepancy_id']}",
        ),
        origin=hukou,
        destination=residence,
    )
    return {"event_id": str(event.id), "action": body["action"]}


async def _retire_here(
    conn: asyncpg.Connection, here: str, kind: str, rid: str, kept: str | None, body: dict[str, Any]
) -> dict[str, Any]:
    if kind != "birth" or not kept:
        raise RuleViolation("only a birth registered twice is retired", field="kind", rule="birth-only")
    if await births.birth_by_certificate(conn, here, kept) is None:
        raise RuleViolation("the birth to keep is not held here", field="kept_key", rule="kept-record-held")
    gone = await repo.delete_record(conn, here, kind, uuid.UUID(rid))
    correction = {
        "correction_id": body["repair_id"],
        "corrected_event_id": (gone and gone["event_id"]) or body["repair_id"],
        "record_type": kind,
        "record_id": rid,
        "changes": {rules.RETIRED: kept},
        "reason": f"repair of reconciliation case {body['discrepancy_id']}",
    }
    await corrections.insert_correction(conn, here, correction, _plain_row(gone), Made(here))
    return {rules.RETIRED: kept}


def _plain_row(row: asyncpg.Record | None) -> dict[str, Any]:
    if row is None:
        return {}
    keep = ("created_at", "updated_at")
    return {k: _plain(v) for k, v in dict(row).items() if k not in keep}


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.date) else str(v) if isinstance(v, uuid.UUID) else v


async def apply_repair(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome | None:
    """Apply a counterpart's repair; None when the correction is not one (a registrar's correction)."""
    kind, rid, changes = d["record_type"], d["record_id"], d["changes"]
    if rules.RETIRED in changes:
        return await _retire_copy(conn, t, kind, rid, str(changes[rules.RETIRED]))
    whole = rules.whole_record(kind, changes)
    if whole is None:
        return None
    if str(whole[rules.KEY_FIELD[kind]]) != rid:
        return rejected("the record's key is not the correction's record_id")
    if kind == "pregnancy" and not await _confined(conn, t.here, whole["mother_id_number"]):
        return rejected("pregnancy records are kept only by the mother's origin and destination")
    row = await repo.held(conn, t.here, kind, rid)
    try:
        async with conn.transaction():  # a savepoint: a refused repair leaves our records as they were
            if row is None:
                return await _restore(conn, t, kind, whole, d)
            return await _bring_in_line(conn, t, kind, row, whole, d)
    except DomainError as e:
        return "conflict", [{"field": e.field or "record_id", "ours": None, "theirs": None}], e.rule
    except asyncpg.IntegrityConstraintViolationError as e:
        return "conflict", [], f"the repair conflicts with our records ({e.constraint_name})"


async def _confined(conn: asyncpg.Connection, here: str, mother: str) -> bool:
    row = await person_records.get_person(conn, here, mother)
    return row is not None and here in (row["hukou_division"], row["residence_division"])


async def _bring_in_line(
    conn: asyncpg.Connection,
    t: Target,
    kind: str,
    row: dict[str, Any],
    whole: dict[str, Any],
    d: dict[str, Any],
) -> Outcome:
    changed = rules.differing(kind, row, whole)
    if not changed:
        return "applied", [], None  # held here as sent: nothing to change, whoever says so
    owner = row.get("source_division") or t.here
    if owner != t.source:
        conflict = {"field": "source_division", "ours": owner, "theirs": t.source}
        return "conflict", [conflict], "the record is not the correcting jurisdiction's"
    await check_consistent(conn, t.here, kind, {**row, **changed}, changed)
    previous = {f: _plain(row[f]) for f in changed}
    async with _residence_follows(conn, t.here, kind, whole):
        await repo.update_held(conn, t.here, kind, d["record_id"], changed, rules.REPAIRABLE[kind])
    await corrections.insert_correction(conn, t.here, d, previous, t.made)
    return "applied", [], None


async def _restore(
    conn: asyncpg.Connection, t: Target, kind: str, whole: dict[str, Any], d: dict[str, Any]
) -> Outcome:
    made_by = d["corrected_event_id"]
    ours = await repo.own_event(conn, t.here, made_by)
    source, source_event = t.source, made_by
    own = None if ours is None else rules.made_by_own_event(kind, *ours)
    if ours is not None and own is None:
        return "conflict", [], f"corrected_event_id names an event of ours that makes no {kind}"
    if own is not None:  # our own record, sent back by a counterpart that holds a copy of it
        if str(own.get(rules.KEY_FIELD[kind])) != d["record_id"]:
            return "conflict", [], "corrected_event_id names an event of ours about another record"
        corrected = await repo.own_corrected_fields(conn, t.here, kind, d["record_id"])
        bad = rules.agrees_with_own_event(whole, own, corrected)
        if bad:
            conflicts = [{"field": f, "ours": None, "theirs": None} for f in bad]
            return "conflict", conflicts, "the copy sent back contradicts our own event of the record"
        source, source_event = t.here, None
        if kind == "certificate":
            return await _reissue_own(conn, t, own, d)
        if kind == "pregnancy":  # the sender holds a copy: it is still shared with it (``held_by``)
            whole = {**whole, "shared_with": [t.source]}
    elif kind == "certificate" and whole["issuer"] != t.source:
        conflict = {"field": "issuer", "ours": None, "theirs": None}
        return "conflict", [conflict], "a certificate is taken only from its issuer"
    subject = t.subject(_person_of(whole))
    own_event = made_by if own is not None else None  # our record comes back with our event
    async with _residence_follows(conn, t.here, kind, whole):
        done = await repo.insert_whole(conn, t.here, kind, whole, subject, source, source_event, own_event)
    if not done:
        return "conflict", [], f"another {kind} is held here under this key"
    await corrections.insert_correction(conn, t.here, d, {}, t.made)
    return "applied", [], None


def _residence_follows(
    conn: asyncpg.Connection, here: str, kind: str, whole: dict[str, Any]
) -> contextlib.AbstractAsyncContextManager[None]:
    """A move restored or brought in line takes her residence along if it is her last
    (``migrations.residence_follows``); any other record costs no query."""
    if kind != "migration":
        return contextlib.nullcontext()
    return residence_follows(conn, here, whole["id_number"])


def _person_of(whole: dict[str, Any]) -> str:
    for f in ("id_number", "mother_id_number", "spouse_a_id_number", "holder_id_number"):
        if whole.get(f):
            return str(whole[f])
    raise ValueError("a whole record names its person")


async def _reissue_own(
    conn: asyncpg.Connection, t: Target, own: dict[str, Any], d: dict[str, Any]
) -> Outcome:
    """Our own certificate, lost here: back into our register as our issuance event says (token and
    status index included), revoked if our own log says so."""
    cert = p.CertificateIssuedV1.model_validate(own).model_dump()
    number = cert["certificate_number"]
    await certificates.insert_certificate(conn, t.here, cert, d["corrected_event_id"])
    subject = t.subject(cert["holder_id_number"])
    for revoked in await repo.own_events_of(conn, subject, "certificate.revoked.v1"):
        if revoked.get("certificate_number") == number:
            when = dt.date.fromisoformat(str(revoked["revoked_on"]))
            await certificates.revoke_certificate(conn, number, when, str(revoked["reason"]))
    await corrections.insert_correction(conn, t.here, d, {}, t.made)
    return "applied", [], None


async def _retire_copy(conn: asyncpg.Connection, t: Target, kind: str, rid: str, kept: str) -> Outcome:
    if kind != "birth":
        return rejected("only a birth registered twice is retired")
    row = await records.get_record(conn, t.here, kind, rid)
    if row is None:
        return "applied", [], None  # not held here: what the repair asks for holds already
    if row["source_division"] != t.source:
        conflict = {"field": "source_division", "ours": row["source_division"], "theirs": t.source}
        return "conflict", [conflict], "the record is not the correcting jurisdiction's"
    if await births.birth_by_certificate(conn, t.here, kept) is None:
        return "conflict", [], "the birth to keep is not in our records"
    gone = await repo.delete_record(conn, t.here, kind, row["id"])
    correction = {
        "correction_id": uuid.uuid4(),
        "corrected_event_id": row["event_id"] or t.event_id,
        "record_type": kind,
        "record_id": rid,
        "changes": {rules.RETIRED: kept},
        "reason": "retired as a duplicate on the word of its source",
    }
    await corrections.insert_correction(conn, t.here, correction, _plain_row(gone), t.made)
    return "applied", [], None
