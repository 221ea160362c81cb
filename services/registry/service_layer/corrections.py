"""Corrections: a registrar fixes a recorded fact, naming the event corrected and why; a
counterpart's correction of a record it is the source of, applied to our records."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters import births, marriages, records
from services.registry.adapters import corrections as repo
from services.registry.adapters import migrations as moves
from services.registry.adapters import persons as person_records
from services.registry.adapters.records import Made
from services.registry.domain import corrections as rules
from services.registry.domain.corrections import CorrectionRecorded, CorrectRecord
from services.registry.domain.marriages import check_dissolution, check_marriage
from services.registry.domain.migrations import check_in_date_order, check_residence
from services.registry.service_layer.context import Context, Outcome, Target, announce, applied, rejected
from shared.errors import DomainError, NotFound, RuleViolation
from shared.events import payloads as p
from shared.events.envelope import new_event_id

_SUBJECT_FIELD = {
    "person": "id_number",
    "migration": "id_number",
    "marriage": "spouse_a_id_number",
    "birth": "mother_id_number",
    "pregnancy": "mother_id_number",
}


def _subject_of(record_type: str, row: asyncpg.Record) -> str:
    """Whose event stream the correction belongs to."""
    return str(row[_SUBJECT_FIELD[record_type]])


async def check_and_apply(
    conn: asyncpg.Connection, here: str, body: dict[str, Any], check_event: bool = True
) -> tuple[asyncpg.Record, dict[str, Any], dict[str, Any]]:
    """Validate a correction against our records and apply it; returns the row, typed changes, previous.

    A counterpart's correction (``check_event=False``) was checked against the event it names by
    its source registry, which may have announced the record under another event id than ours.
    """
    record_type, record_id = body["record_type"], body["record_id"]
    changes = rules.parse_changes(record_type, body["changes"])
    row = await records.get_record(conn, here, record_type, record_id)
    if row is None:
        raise NotFound(
            f"no such {record_type} in this jurisdiction's records", field="record_id", rule="exists"
        )
    if check_event:
        known = await repo.events_of_record(conn, here, record_type, record_id, row)
        rules.check_names_event(body["corrected_event_id"], known)
    after = {**dict(row), **changes}
    await check_consistent(conn, here, record_type, after, changes)
    previous = {f: _plain(row[f]) for f in changes}
    await records.update_record(
        conn, here, record_type, record_id, changes, frozenset(rules.CORRECTABLE[record_type])
    )
    return row, changes, previous


async def check_consistent(
    conn: asyncpg.Connection, here: str, record_type: str, after: dict[str, Any], changes: dict[str, Any]
) -> None:
    if record_type == "birth":
        mother = await person_records.get_person(conn, here, after["mother_id_number"])
        if mother is not None:
            rules.check_birth_dates(mother["birth_date"], after)
        father_id = after.get("father_id_number")
        father = await person_records.get_person(conn, here, father_id) if father_id else None
        if changes.get("father_id_number") and father is None:
            raise RuleViolation(
                "changes.father_id_number names a person who is not in this jurisdiction's records",
                field="changes.father_id_number",
                rule="person-must-exist",
            )
        if father is not None and {"father_id_number", "child_birth_date"} & changes.keys():
            changed = "father_id_number" if "father_id_number" in changes else "child_birth_date"
            rules.check_birth_father(father["sex"], father["birth_date"], after, changed)
        siblings = await births.births_of_mother(conn, here, after["mother_id_number"])
        for other in siblings:
            if other["id"] == after["id"]:
                continue
            earlier = other["birth_order"] < after["birth_order"]
            if (earlier and other["child_birth_date"] > after["child_birth_date"]) or (
                not earlier and other["child_birth_date"] < after["child_birth_date"]
            ):
                raise RuleViolation(
                    "the corrected birth date contradicts the birth order of the mother's children",
                    field="changes.child_birth_date",
                    rule="birth-order-consistent",
                )
    if record_type == "marriage":
        await _check_marriage(conn, here, after)
    if record_type == "pregnancy":
        rules.check_pregnancy_dates(after)
    if record_type == "migration" and "migration_date" in changes:
        await _check_move_date(conn, here, after)
    if record_type == "person" and "residence_division" in changes:
        known = await moves.residence(conn, here, after["id_number"])
        check_residence(after["residence_division"], known, "changes.residence_division")


async def _check_move_date(conn: asyncpg.Connection, here: str, after: dict[str, Any]) -> None:
    """A move's corrected date keeps its place among her moves, so the last of them, which says
    where she lives, stays the last (the move route's date rule, from both sides)."""
    # Her row locked as recording a move locks it: a move recorded meanwhile is seen here, or waits.
    await moves.residence(conn, here, after["id_number"])
    before, later = await moves.dates_around(conn, here, after["id"])
    check_in_date_order(after["migration_date"], before, later, "changes.migration_date")


async def _check_marriage(conn: asyncpg.Connection, here: str, after: dict[str, Any]) -> None:
    if after["dissolution_date"] is not None:
        check_dissolution(after["marriage_date"], None, after["dissolution_date"])
    spouses = []
    for field in ("spouse_a_id_number", "spouse_b_id_number"):
        person = await person_records.get_person(conn, here, after[field])
        if person is not None:
            spouses.append((field, person["sex"], person["birth_date"]))
        for other in await marriages.marriages_of(conn, here, after[field]):
            if other["marriage_id"] == after["id"]:
                continue
            ends = other["dissolution_date"]
            if (ends is None or ends > after["marriage_date"]) and other["marriage_date"] < (
                after["dissolution_date"] or dt.date.max
            ):
                raise RuleViolation(
                    "the corrected marriage date overlaps another marriage of a spouse",
                    field="changes.marriage_date",
                    rule="one-active-marriage",
                )
    check_marriage(after["marriage_date"], spouses, {}, {})


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


async def record_correction(
    conn: asyncpg.Connection, ctx: Context, here: str, body: CorrectRecord
) -> CorrectionRecorded:
    """Correct a record of this jurisdiction and announce ``record.corrected.v1``."""
    row, _, previous = await check_and_apply(conn, here, body.model_dump())
    correction = {**body.model_dump(), "correction_id": uuid.uuid4(), "record_id": body.record_id}
    event_id = new_event_id()
    await repo.insert_correction(conn, here, correction, previous, Made(here, event_id=event_id))
    id_number = _subject_of(body.record_type, row)
    person = await person_records.get_person(conn, here, id_number)
    event = await announce(
        conn,
        ctx,
        here,
        event_type="record.corrected.v1",
        id_number=id_number,
        data=p.RecordCorrectedV1(**{k: correction[k] for k in p.RecordCorrectedV1.model_fields}),
        origin=person["hukou_division"] if person else None,
        destination=person["residence_division"] if person else None,
        event_id=event_id,
    )
    return CorrectionRecorded.model_validate(
        {**correction, "previous": previous, "jurisdiction": here, "event_id": event.id}
    )


async def applied_before(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome | None:
    """A counterpart's correction (or repair) already noted here, None if it is new. The exchange
    sends again what it has no answer to yet, under a new event id, possibly after the source
    corrected the record once more: applying it again would bring back the older values, so it
    is answered ``applied`` and changes nothing. A correction id noted here for another record or
    from another jurisdiction is a conflict."""
    held = await repo.get_correction(conn, t.here, d["correction_id"])
    if held is None:
        return None
    if (held["source_division"], held["record_type"], held["record_id"]) == (
        t.source,
        d["record_type"],
        d["record_id"],
    ):
        return applied()
    conflict = {"field": "correction_id", "ours": None, "theirs": None}
    return "conflict", [conflict], "this correction id is recorded here for another record"


async def apply_correction(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    """A counterpart corrects only the records it is the source of (DESIGN section 10); a record
    another jurisdiction recorded, ours included, is answered ``conflict`` and left as it is.
    (A repair of a reconciliation case, which keeps the same rule, is ``repairs.apply_repair``'s.)"""
    record = await records.get_record(conn, t.here, d["record_type"], d["record_id"])
    if record is None:
        return rejected(f"the corrected {d['record_type']} is not in our records")
    owner = record.get("source_division") or t.here  # certificates are only ever our own
    if owner != t.source:
        conflict = {"field": "source_division", "ours": owner, "theirs": t.source}
        return "conflict", [conflict], "the record is not the correcting jurisdiction's"
    try:
        async with conn.transaction():  # a savepoint: a refused correction leaves our record as it was
            _, _, previous = await check_and_apply(conn, t.here, d, check_event=False)
            await repo.insert_correction(conn, t.here, d, previous, t.made)
    except DomainError as e:
        return "conflict", [{"field": e.field or "record_id", "ours": None, "theirs": None}], e.rule
    except asyncpg.IntegrityConstraintViolationError as e:
        return "conflict", [], f"the correction conflicts with our records ({e.constraint_name})"
    return applied()
