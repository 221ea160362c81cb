"""Rules of pregnancy records. Pure functions: no I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from services.registry.domain.persons import is_ours
from services.registry.domain.rules import Command, check_end, check_not_future
from shared.errors import Conflict, RuleViolation
from shared.identity import IdNumber, PastDate

# A pregnancy lasts at most about 44 weeks; anything later is a typing error.
MAX_PREGNANCY_DAYS = 310


def check_pregnancy(
    mother_sex: str,
    mother_born: dt.date,
    registered_on: dt.date,
    expected: dt.date | None,
    has_open: bool,
) -> None:
    if mother_sex != "F":
        raise RuleViolation(
            "the identity number is not a woman's", field="mother_id_number", rule="mother-is-female"
        )
    check_not_future(registered_on, "registered_on")
    if registered_on <= mother_born:
        raise RuleViolation(
            "registered_on is before the mother's birth", field="registered_on", rule="after-mother-birth"
        )
    if expected is not None and not (
        registered_on < expected <= registered_on + dt.timedelta(days=MAX_PREGNANCY_DAYS)
    ):
        raise RuleViolation(
            f"expected_delivery must fall within {MAX_PREGNANCY_DAYS} days after registered_on",
            field="expected_delivery",
            rule="expected-delivery-plausible",
        )
    if has_open:
        raise Conflict(
            "the mother has an open pregnancy record: close it first",
            field="mother_id_number",
            rule="one-open-pregnancy",
        )


def check_registered_by_hers(here: str, hukou: str, residence: str) -> None:
    """A pregnancy is registered by one of the mother's two registries, which alone share it
    (DESIGN section 8): a registry she has moved away from knows her still, but is neither."""
    if not is_ours(here, hukou, residence):
        raise RuleViolation(
            f"{here} is neither the mother's place of household registration nor of residence: "
            "her pregnancy is registered at one of those",
            field="mother_id_number",
            rule="registered-at-hukou-or-residence",
        )


def check_pregnancy_closure(registered_on: dt.date, closed: dt.date | None, when: dt.date) -> None:
    if closed is not None:
        raise Conflict("this pregnancy is already closed", field="pregnancy_id", rule="already-closed")
    check_end(registered_on, when, "closed_on", "closure-after-registration", "the pregnancy was registered")


class RegisterPregnancy(Command):
    """A pregnancy to register."""

    mother_id_number: IdNumber
    registered_on: PastDate | None = Field(default=None, description="defaults to today")
    expected_delivery: dt.date | None = None


class ClosePregnancy(Command):
    """The end of a pregnancy record."""

    outcome: Literal["birth", "ended", "transferred"]
    closed_on: PastDate | None = Field(default=None, description="defaults to today")


class PregnancyRecorded(BaseModel):
    """A pregnancy record as kept here (closed or not)."""

    pregnancy_id: uuid.UUID
    mother_id_number: str
    registered_in: str
    registered_on: dt.date
    expected_delivery: dt.date | None = None
    closed_on: dt.date | None = None
    outcome: str | None = None
    jurisdiction: str
    event_id: uuid.UUID | None = None
