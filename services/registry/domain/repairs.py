"""Repairs of reconciliation cases: a record as its owner holds it, travelling as a correction.

A repair is a ``record.corrected.v1`` whose ``record_id`` is the record's exchange key (the key
both registries file it under: the person's identity number, the birth, marriage, move or
pregnancy id) and whose ``changes`` are either

* the **whole record** as the sending side holds it (every field of ``WHOLE[kind]``): the
  counterpart inserts it when it lacks it, or brings its copy in line when it differs; or
* ``{RETIRED: kept key}``: the record is one birth registered twice, and the copy named is
  retired in favour of the kept one.

Pure functions: which fields make a whole record, which of them a repair may change on a record
already held, and what differs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.registry.domain.persons import sex_from_id_number
from shared.errors import RuleViolation
from shared.events import payloads as p
from shared.identity import DivisionCode, IdNumber, birth_date_of

RETIRED = "retired_as_duplicate_of"


class _Whole(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WholePerson(_Whole):
    id_number: IdNumber
    name: str = Field(min_length=1, max_length=64)
    sex: p.Sex
    birth_date: dt.date
    hukou_division: DivisionCode
    residence_division: DivisionCode


class WholeMigration(_Whole):
    migration_id: uuid.UUID
    id_number: IdNumber
    kind: Literal["departed", "arrived", "returned"]
    from_division: DivisionCode
    to_division: DivisionCode
    migration_date: dt.date


class WholeMarriage(_Whole):
    marriage_id: uuid.UUID
    spouse_a_id_number: IdNumber
    spouse_b_id_number: IdNumber
    marriage_date: dt.date
    dissolution_date: dt.date | None = None
    dissolution_reason: Literal["divorce", "death", "annulment"] | None = None


class WholePregnancy(_Whole):
    pregnancy_id: uuid.UUID
    mother_id_number: IdNumber
    registered_in: DivisionCode
    registered_on: dt.date
    expected_delivery: dt.date | None = None
    closed_on: dt.date | None = None
    outcome: Literal["birth", "ended", "transferred"] | None = None


class WholeCertificate(_Whole):
    certificate_number: str = Field(pattern=r"^[0-9]{6}-[0-9]{4}-[0-9A-Z]{8}$")
    holder_id_number: IdNumber
    issuer: DivisionCode
    issued_on: dt.date
    valid_until: dt.date
    revoked_on: dt.date | None = None


# record kind -> the model of a whole record (a birth is its registration payload)
WHOLE: dict[str, type[BaseModel]] = {
    "person": WholePerson,
    "migration": WholeMigration,
    "marriage": WholeMarriage,
    "birth": p.BirthRegisteredV1,
    "pregnancy": WholePregnancy,
    "certificate": WholeCertificate,
}
# record kind -> the field of a whole record that holds its exchange key
KEY_FIELD = {
    "person": "id_number",
    "migration": "migration_id",
    "marriage": "marriage_id",
    "birth": "birth_id",
    "pregnancy": "pregnancy_id",
    "certificate": "certificate_number",
}
# What a repair may change on a record already held: everything but the key and the identity of
# the people it is about (a different identity number is a different record).
REPAIRABLE: dict[str, frozenset[str]] = {
    "person": frozenset({"name", "sex", "birth_date", "hukou_division", "residence_division"}),
    "migration": frozenset({"kind", "from_division", "to_division", "migration_date"}),
    "marriage": frozenset({"marriage_date", "dissolution_date", "dissolution_reason"}),
    "birth": frozenset(
        {
            "medical_certificate_number",
            "child_name",
            "child_sex",
            "child_birth_date",
            "child_id_number",
            "father_id_number",
            "birth_order",
            "birth_division",
        }
    ),
    "pregnancy": frozenset({"registered_in", "registered_on", "expected_delivery", "closed_on", "outcome"}),
    "certificate": frozenset({"valid_until", "revoked_on"}),  # a copy follows its issuer's register
}


def whole_record(kind: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    """The changes as a typed whole record of ``kind``, or None when they are not one."""
    model = WHOLE.get(kind)
    if model is None or set(changes) != set(model.model_fields) - _optional_absent(model, changes):
        return None
    try:
        return model.model_validate(changes).model_dump()
    except ValidationError:
        return None


def _optional_absent(model: type[BaseModel], changes: dict[str, Any]) -> set[str]:
    return {n for n, f in model.model_fields.items() if not f.is_required() and n not in changes}


def wire_values(kind: str, key: str, rid: str, values: dict[str, Any]) -> dict[str, Any]:
    """A held record's canonical values (``adapters.reconciliation.FIELDS``) as a whole record's
    changes: the key added, numbers as numbers."""
    out = {**values, KEY_FIELD[kind]: rid}
    if kind == "birth":
        out["medical_certificate_number"] = key
        out["birth_order"] = int(out["birth_order"])
    for optional in ("dissolution_date", "dissolution_reason", "revoked_on", "closed_on", "outcome"):
        if optional in out and out[optional] is None:
            del out[optional]
    return out


def _plain(value: Any) -> Any:
    return (
        value.isoformat()
        if isinstance(value, dt.date)
        else str(value)
        if isinstance(value, uuid.UUID)
        else value
    )


def differing(kind: str, ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``theirs`` (a typed whole record) that differ from our row, with their values.

    Raises when one of them may not be changed by a repair (the key or a person's identity).
    """
    changed = {f: v for f, v in theirs.items() if _plain(ours.get(_column(kind, f))) != _plain(v)}
    for f in changed:
        if f not in REPAIRABLE[kind]:
            raise RuleViolation(
                f"{f} differs, and a repair does not change it on a {kind} record",
                field=f"changes.{f}",
                rule="field-not-repairable",
            )
    return changed


def _column(kind: str, field: str) -> str:
    return "id" if field == KEY_FIELD[kind] and kind not in ("person", "certificate") else field


_MOVES = {f"migration.{kind}.v1": kind for kind in ("departed", "arrived", "returned")}
# record kind -> the types of our own events that make such a record (a person first recorded
# here by a move is made by the move's event)
MADE_BY: dict[str, frozenset[str]] = {
    "person": frozenset({"person.registered.v1", *_MOVES}),
    "migration": frozenset(_MOVES),
    "marriage": frozenset({"marriage.registered.v1"}),
    "birth": frozenset({"birth.registered.v1", "birth.registered.v2"}),
    "pregnancy": frozenset({"pregnancy.registered.v1"}),
    "certificate": frozenset({"certificate.issued.v1"}),
}


def made_by_own_event(kind: str, event_type: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """What our own event says of the ``kind`` of record it made, under the whole record's field
    names; None when an event of that type makes no such record (an end, a correction, a move
    named as a marriage): the fields a copy sent back is held against.

    A move's kind is its event's type; a birth's place of record, its ``birth_place``; a person
    first recorded by a move has the sex and birth date her identity number gives."""
    if event_type not in MADE_BY.get(kind, frozenset()):
        return None
    if kind == "migration":
        return {**data, "kind": _MOVES[event_type]}
    if kind == "birth" and isinstance(data.get("birth_place"), dict):
        return {**data, "birth_division": data["birth_place"].get("division")}
    if kind == "person" and event_type in _MOVES:
        number = str(data.get("id_number"))
        return {**data, "sex": sex_from_id_number(number), "birth_date": birth_date_of(number)}
    return data


def agrees_with_own_event(whole: dict[str, Any], own: dict[str, Any], corrected: set[str]) -> list[str]:
    """Fields of a record sent back to its owner that contradict the owner's own event of it.

    Fields the owner corrected since (``corrected``) are not held against the copy.
    """
    return sorted(
        f for f in whole.keys() & own.keys() if f not in corrected and _plain(whole[f]) != _plain(own[f])
    )
