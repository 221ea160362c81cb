"""What makes a person registrable: the facts the identity number already states must agree.

One function for the registration route and the bulk import alike, so a roster row and an API
request are refused by the same rule with the same name. Pure functions.
"""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field

from services.registry.domain.rules import Command
from shared.errors import RuleViolation
from shared.events.payloads import Sex
from shared.identity import DivisionCode, IdNumber, PastDate, birth_date_of
from shared.text import PlainText


def sex_from_id_number(id_number: str) -> str:
    """GB 11643: the 17th digit is odd for men, even for women."""
    return "M" if int(id_number[16]) % 2 else "F"


def check_person_birth_date(id_number_birth: dt.date, given: dt.date) -> None:
    if given != id_number_birth:
        raise RuleViolation(
            "birth_date differs from the birth date in the identity number",
            field="birth_date",
            rule="birth-date-matches-id-number",
        )


def check_person(id_number: str, sex: str, birth_date: dt.date) -> None:
    """Birth date and sex must match the identity number's (GB 11643) birth date and sex digit."""
    check_person_birth_date(birth_date_of(id_number), birth_date)
    if sex != sex_from_id_number(id_number):
        raise RuleViolation(
            "sex differs from the sex digit of the identity number", field="sex", rule="sex-matches-id-number"
        )


def is_ours(here: str, hukou: str, residence: str) -> bool:
    """Whether ``here`` speaks for a person: her place of household registration or of residence
    (exchange peers refuse a ``person.registered.v1`` from anywhere else,
    ``shared.events.signature.PLACES_OF_RECORD``)."""
    return here in (hukou, residence)


def check_person_place(here: str, hukou: str, residence: str) -> None:
    """A jurisdiction's own register (an import of it) holds those it speaks for (``is_ours``)."""
    if not is_ours(here, hukou, residence):
        raise RuleViolation(
            f"an import is of {here}'s own register: her place of household registration or of residence must be {here}",
            field="residence_division",
            rule="registered-at-hukou-or-residence",
        )


class RegisterPerson(Command):
    """A person to register."""

    id_number: IdNumber
    name: PlainText = Field(min_length=1, max_length=64)
    sex: Sex
    birth_date: PastDate
    hukou_division: DivisionCode = Field(description="place of household registration")
    residence_division: DivisionCode | None = Field(
        default=None, description="defaults to the hukou division"
    )


class Person(BaseModel):
    """A person's details as this registry holds them."""

    id_number: str
    name: str
    sex: Sex
    birth_date: dt.date
    hukou_division: str
    residence_division: str


class PersonRecorded(Person):
    """A person as registered here."""

    jurisdiction: str
    source_division: str
    event_id: uuid.UUID | None = Field(
        description="the person.registered.v1 announcing her; none for a person of elsewhere "
        "(a spouse or a father from another division), whom her own registries announce"
    )
