"""Parsing roster rows with the registry API's own model, in batches, ahead of the writer.

``check_batch`` is what the import's worker processes run: it takes plain rows and returns plain
results (picklable), so parsing of the next batches runs on other cores while the current batch
is written. The registration rule is the registry's (``domain.persons.check_person``): checked
here too, so that ``validate_row`` says what the import will say of a row; the registry's
import use case applies it again when it writes.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.registry.domain.persons import check_person
from services.registry.entrypoints.schemas_vital_events import PersonIn
from shared.errors import DomainError
from shared.text import MESSAGE as FORMULA_MESSAGE
from shared.text import RULE as FORMULA_RULE
from shared.text import looks_like_formula

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
        check_person(person["id_number"], person["sex"], person["birth_date"])  # as register_person
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


# line, the person (or None), the broken rule (or None)
Checked = tuple[int, dict[str, Any] | None, tuple[str | None, str, str] | None]


def check_batch(batch: list[tuple[int, dict[str, str]]]) -> list[Checked]:
    """Every row of a batch parsed: the person the API would accept, or the rule the row breaks."""
    return [(line, *validate_row(fields)) for line, fields in batch]
