"""Rules of marriages and their dissolution. Pure functions: no I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel

from services.registry.domain.rules import Command, check_end, check_not_future
from shared.errors import Conflict, RuleViolation
from shared.identity import IdNumber, PastDate

# Minimum marriage age of the Marriage Law (art. 6 / Civil Code art. 1047).
MARRIAGE_AGE = {"M": 22, "F": 20}


def age_on(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def check_marriage(
    when: dt.date,
    spouses: list[tuple[str, str, dt.date]],
    active: dict[str, bool],
    last_dissolution: dict[str, dt.date | None],
) -> None:
    """``spouses``: (field, sex, birth date) of each; ``active``: field -> already married."""
    check_not_future(when, "marriage_date")
    for field, sex, born in spouses:
        if age_on(born, when) < MARRIAGE_AGE[sex]:
            raise RuleViolation(
                f"{field} is below the legal marriage age ({MARRIAGE_AGE[sex]}) on the marriage date",
                field=field,
                rule="marriage-age",
            )
        if active.get(field):
            raise Conflict(
                f"{field} is already married: a marriage must be dissolved before another is registered",
                field=field,
                rule="one-active-marriage",
            )
        ended = last_dissolution.get(field)
        if ended is not None and when < ended:
            raise RuleViolation(
                f"marriage_date is before the end of {field}'s previous marriage",
                field="marriage_date",
                rule="marriages-in-date-order",
            )


def check_dissolution(marriage_date: dt.date, dissolved: dt.date | None, when: dt.date) -> None:
    if dissolved is not None:
        raise Conflict("this marriage is already dissolved", field="marriage_id", rule="already-dissolved")
    check_end(marriage_date, when, "dissolution_date", "dissolution-after-marriage", "the marriage date")


class RegisterMarriage(Command):
    """A marriage to register."""

    spouse_a_id_number: IdNumber
    spouse_b_id_number: IdNumber
    marriage_date: PastDate


class DissolveMarriage(Command):
    """The end of a marriage to record."""

    dissolution_date: PastDate
    reason: Literal["divorce", "death", "annulment"]


class MarriageRecorded(BaseModel):
    """A marriage as recorded here (dissolved or not)."""

    marriage_id: uuid.UUID
    spouse_a_id_number: str
    spouse_b_id_number: str
    marriage_date: dt.date
    registered_in: str
    dissolution_date: dt.date | None = None
    dissolution_reason: str | None = None
    jurisdiction: str
    event_id: uuid.UUID
