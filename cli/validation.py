"""Checking roster rows with the registry API's own model and rules, in batches.

``check_batch`` is what the import's worker processes run: it takes plain rows and returns plain
results (picklable), so validation of the next batches runs on other cores while the current
batch is written.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.registry.domain import rules
from services.registry.entrypoints.schemas import PersonIn
from shared.errors import DomainError, RuleViolation
from shared.identity import birth_date_of, subject_key
from shared.text import MESSAGE as FORMULA_MESSAGE
from shared.text import RULE as FORMULA_RULE
from shared.text import looks_like_formula

Reject = tuple[int, str | None, str, str]  # line, field, rule, message

# pydantic reports every validator's ValueError as "value_error"; the rejects file names the rule.
_VALUE_RULES = (
    ("check digit", "gb11643-check-digit"),
    ("birth-place", "gb11643-birth-date-and-place"),
    ("18 characters", "gb11643-length"),
    ("17 digits", "gb11643-format"),
    ("identity number has a birth date in the future", "not-in-future"),
    ("identity number", "gb11643"),
    ("unknown division", "gb2260-known-division"),
    ("division code must be", "gb2260-format"),
    ("date is in the future", "not-in-future"),
)


def _rule(error_type: str, message: str) -> str:
    if error_type != "value_error":
        return error_type
    return next((rule for text, rule in _VALUE_RULES if text in message), error_type)


def validate_row(fields: dict[str, str]) -> tuple[dict[str, Any] | None, tuple[str | None, str, str] | None]:
    """The person the registry API would accept from this row, or the first rule the row breaks.

    Roster cells are data, never formulas: a cell of any column that begins like one is refused
    with the rule the API's text fields apply (``shared.text``), before the column's own format.
    """
    for name, value in fields.items():
        if looks_like_formula(value):
            return None, (name, FORMULA_RULE, f"{name}: {FORMULA_MESSAGE}")
    try:
        person = PersonIn.model_validate(fields).model_dump()
        rules.check_person_birth_date(birth_date_of(person["id_number"]), person["birth_date"])
        if person["sex"] != rules.sex_from_id_number(person["id_number"]):  # as register_person checks
            raise RuleViolation(
                "sex differs from the sex digit of the identity number",
                field="sex",
                rule="sex-matches-id-number",
            )
    except ValidationError as e:
        errors = e.errors(include_input=False)
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        message = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {str(err['msg']).removeprefix('Value error, ')}"
            for err in errors
        )
        return None, (where, _rule(str(first["type"]), str(first["msg"])), message)
    except DomainError as e:
        return None, (e.field, e.rule or "invalid", f"{e.field}: {e.detail}")
    person["residence_division"] = person.get("residence_division") or person["hukou_division"]
    return person, None


# line, the person (or None), the broken rule (or None), the person's subject key (or None)
Checked = tuple[int, dict[str, Any] | None, tuple[str | None, str, str] | None, str | None]


def check_batch(batch: list[tuple[int, dict[str, str]]], secret: bytes) -> list[Checked]:
    """Every row of a batch checked, with the pseudonymous subject key of each valid person."""
    out: list[Checked] = []
    for line, fields in batch:
        person, error = validate_row(fields)
        out.append((line, person, error, subject_key(person["id_number"], secret) if person else None))
    return out
