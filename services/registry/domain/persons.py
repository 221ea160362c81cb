"""What makes a person registrable: the facts the identity number already states must agree.

One function for the registration route and the bulk import alike, so a roster row and an API
request are refused by the same rule with the same name.
"""

from __future__ import annotations

import datetime as dt

from services.registry.domain import rules
from shared.errors import RuleViolation
from shared.identity import birth_date_of


def check_person(id_number: str, sex: str, birth_date: dt.date) -> None:
    """Birth date and sex must match the identity number's (GB 11643) birth date and sex digit."""
    rules.check_person_birth_date(birth_date_of(id_number), birth_date)
    if sex != rules.sex_from_id_number(id_number):
        raise RuleViolation(
            "sex differs from the sex digit of the identity number", field="sex", rule="sex-matches-id-number"
        )
