"""A birth: its rules (parents, order, dates), and the birth as the registry stores it (flat
columns) and as ``birth.registered.v2`` carries it. Pure functions: no I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, Field

from services.registry.domain.rules import Command, check_not_future
from shared.errors import RuleViolation
from shared.events import payloads as p
from shared.events.payloads import MEDICAL_CERTIFICATE_PATTERN, BirthPlaceKind, Sex
from shared.identity import IdNumber, PastDate
from shared.text import PlainText

_FLAT = tuple(f for f in p.BirthRegisteredV2.model_fields if f != "birth_place")
# What two records of the same birth must agree on (a counterpart's against ours).
BIRTH_FIELDS = ("child_name", "child_sex", "child_birth_date", "mother_id_number", "birth_order")


def birth_payload(birth: dict[str, Any]) -> p.BirthRegisteredV2:
    """The v2 payload of a stored (or just registered) birth."""
    place = p.BirthPlace(
        division=birth["birth_division"],
        kind=birth.get("birth_place_kind"),
        institution=birth.get("birth_institution"),
    )
    return p.BirthRegisteredV2(**{k: birth.get(k) for k in _FLAT}, birth_place=place)


def birth_record(data: dict[str, Any]) -> dict[str, Any]:
    """The columns of a birth from v2 data (a counterpart's notification, upcast if it was v1)."""
    place = data["birth_place"]
    return {
        **{k: v for k, v in data.items() if k != "birth_place"},
        "birth_division": place["division"],
        "birth_place_kind": place.get("kind"),
        "birth_institution": place.get("institution"),
    }


def check_parents(
    mother_sex: str, father_sex: str | None, father_born: dt.date | None, child_birth: dt.date
) -> None:
    if mother_sex != "F":
        raise RuleViolation(
            "the mother's identity number is not a woman's", field="mother_id_number", rule="mother-is-female"
        )
    if father_sex is not None and father_sex != "M":
        raise RuleViolation(
            "the father's identity number is not a man's", field="father_id_number", rule="father-is-male"
        )
    if father_born is not None and child_birth <= father_born:
        raise RuleViolation(
            "the child is born after the father", field="child_birth_date", rule="child-after-father"
        )


def check_birth(
    mother_birth: dt.date, child_birth: dt.date, birth_order: int, previous_children: int
) -> None:
    check_not_future(child_birth, "child_birth_date")
    if child_birth <= mother_birth:
        raise RuleViolation(
            "the child is born after the mother", field="child_birth_date", rule="child-after-mother"
        )
    if birth_order != previous_children + 1:
        raise RuleViolation(
            f"birth_order must be {previous_children + 1}: {previous_children} children are recorded for the mother",
            field="birth_order",
            rule="birth-order-consistent",
        )


class RegisterBirth(Command):
    """A birth to register."""

    medical_certificate_number: str = Field(pattern=MEDICAL_CERTIFICATE_PATTERN)
    child_name: PlainText = Field(min_length=1, max_length=64)
    child_sex: Sex
    child_birth_date: PastDate
    child_id_number: IdNumber | None = None
    mother_id_number: IdNumber
    father_id_number: IdNumber | None = None
    birth_order: int | None = Field(
        default=None, ge=1, le=20, description="computed from the records if omitted"
    )
    birth_place_kind: BirthPlaceKind | None = Field(
        default=None, description="the kind of place of birth (出生地点), as on the medical certificate"
    )
    birth_institution: PlainText | None = Field(
        default=None, min_length=1, max_length=100, description="the delivering institution's name"
    )


class BirthRecorded(BaseModel):
    """A birth as registered here."""

    birth_id: uuid.UUID
    medical_certificate_number: str
    child_name: str
    child_sex: Sex
    child_birth_date: dt.date
    mother_id_number: str
    father_id_number: str | None
    birth_order: int
    birth_division: str
    birth_place_kind: BirthPlaceKind | None = None
    birth_institution: str | None = None
    jurisdiction: str
    event_id: uuid.UUID
