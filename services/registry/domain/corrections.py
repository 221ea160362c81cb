"""What a correction may change, and how each changed value is checked. Pure functions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from services.registry.domain.pregnancies import MAX_PREGNANCY_DAYS
from services.registry.domain.rules import Command
from shared.errors import RuleViolation
from shared.identity import check_division, check_id_number
from shared.inputs import FieldName, FieldValue
from shared.text import PlainText, check_plain_value


def _name(v: Any) -> str:
    if not isinstance(v, str) or not 1 <= len(v.strip()) <= 64:
        raise ValueError("must be a name of 1-64 characters")
    return v.strip()


def _sex(v: Any) -> str:
    if v not in ("F", "M"):
        raise ValueError("must be F or M")
    return str(v)


def _past_date(v: Any) -> dt.date:
    d = _date(v)
    if d > dt.date.today():
        raise ValueError("is in the future")
    return d


def _date(v: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(str(v)) if isinstance(v, str) and len(v) == 10 else _bad_date()
    except ValueError:
        return _bad_date()


def _bad_date() -> dt.date:
    raise ValueError("must be an ISO date (YYYY-MM-DD)")


def _id_number(v: Any) -> str | None:
    return None if v is None else check_id_number(str(v))


def _division(v: Any) -> str:
    return check_division(str(v))


# record type -> field -> parser. Identity numbers of the record's own subject are not corrected:
# a wrong identity number is a different person, recorded anew.
CORRECTABLE: dict[str, dict[str, Callable[[Any], Any]]] = {
    "person": {"name": _name, "hukou_division": _division, "residence_division": _division},
    "migration": {"migration_date": _past_date},
    "marriage": {"marriage_date": _past_date},
    "birth": {
        "child_name": _name,
        "child_sex": _sex,
        "child_birth_date": _past_date,
        "child_id_number": _id_number,
        "father_id_number": _id_number,
        "birth_division": _division,
    },
    "pregnancy": {"registered_on": _past_date, "expected_delivery": _date},
}


def parse_changes(record_type: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes as typed values; 422 naming the first field that may not or cannot change."""
    allowed = CORRECTABLE.get(record_type)
    if allowed is None:
        raise RuleViolation(
            f"{record_type} records are not corrected: revoke and issue anew",
            field="record_type",
            rule="not-correctable",
        )
    parsed: dict[str, Any] = {}
    for field, value in changes.items():
        if field not in allowed:
            raise RuleViolation(
                f"{field} cannot be corrected on a {record_type} record",
                field=f"changes.{field}",
                rule="field-not-correctable",
            )
        try:
            parsed[field] = allowed[field](value)
        except ValueError as e:
            raise RuleViolation(
                f"changes.{field}: {e}",  # parsers never echo the value (it may be an identity number)
                field=f"changes.{field}",
                rule="valid-value",
            ) from None
    return parsed


def check_names_event(corrected: Any, known: set[Any]) -> None:
    if corrected not in known:
        raise RuleViolation(
            "corrected_event_id is not an event that made or corrected this record",
            field="corrected_event_id",
            rule="correction-names-its-event",
        )


def check_birth_dates(mother_born: dt.date, row: dict[str, Any]) -> None:
    """A corrected birth still comes after the mother's own birth."""
    if row["child_birth_date"] <= mother_born:
        raise RuleViolation(
            "the child is born after the mother", field="changes.child_birth_date", rule="child-after-mother"
        )


def check_birth_father(father_sex: str, father_born: dt.date, row: dict[str, Any], changed: str) -> None:
    """A corrected birth keeps its registration's rules about the father (``check_parents``): a
    man, born before the child. ``changed``: the corrected field the answer names."""
    if father_sex != "M":
        raise RuleViolation(
            "the father's identity number is not a man's",
            field="changes.father_id_number",
            rule="father-is-male",
        )
    if row["child_birth_date"] <= father_born:
        raise RuleViolation(
            "the child is born after the father", field=f"changes.{changed}", rule="child-after-father"
        )


def check_pregnancy_dates(row: dict[str, Any]) -> None:
    """A corrected pregnancy still closes on or after its registration (the rule its closure was
    checked by, which the table's CHECK repeats) and is still expected within a pregnancy's length
    after it (``check_pregnancy``'s rule)."""
    if row["closed_on"] is not None and row["closed_on"] < row["registered_on"]:
        raise RuleViolation(
            "registered_on must not be after the pregnancy's closed_on",
            field="changes.registered_on",
            rule="closure-after-registration",
        )
    latest = row["registered_on"] + dt.timedelta(days=MAX_PREGNANCY_DAYS)  # as registration checks it
    if row["expected_delivery"] is not None and not row["registered_on"] < row["expected_delivery"] <= latest:
        raise RuleViolation(
            f"expected_delivery must fall within {MAX_PREGNANCY_DAYS} days after registered_on",
            field="changes.expected_delivery",
            rule="expected-delivery-plausible",
        )


class CorrectRecord(Command):
    """A correction of a record: the event corrected, the changes, why."""

    corrected_event_id: uuid.UUID = Field(description="the event that made (or last corrected) the record")
    record_type: Literal["person", "marriage", "migration", "pregnancy", "birth", "certificate"]
    record_id: str = Field(
        min_length=1,
        max_length=64,
        description="marriage/migration/birth/pregnancy id, or the person's id number",
    )
    changes: dict[FieldName, Annotated[FieldValue, AfterValidator(check_plain_value)]] = Field(
        min_length=1, max_length=32
    )
    reason: PlainText = Field(min_length=3, max_length=500, description="why the record is corrected")


class CorrectionRecorded(BaseModel):
    """A correction as recorded here, with the values it replaced."""

    correction_id: uuid.UUID
    corrected_event_id: uuid.UUID
    record_type: str
    record_id: str
    changes: dict[str, str | int | None]
    previous: dict[str, Any]
    reason: str
    jurisdiction: str
    event_id: uuid.UUID
