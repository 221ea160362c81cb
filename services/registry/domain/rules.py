"""Rules every kind of record shares. Pure functions: no I/O."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from shared.errors import Conflict, RuleViolation


def check_not_future(value: dt.date, field: str) -> None:
    if value > dt.date.today():
        raise RuleViolation(f"{field} is in the future", field=field, rule="not-in-future")


def check_end(started: dt.date, when: dt.date, field: str, rule: str, start: str) -> None:
    """The end of a record (a marriage's, a pregnancy's): not in the future, not before its start."""
    check_not_future(when, field)
    if when < started:
        raise RuleViolation(f"{field} is before {start}", field=field, rule=rule)


def duplicate(what: str, field: str) -> Conflict:
    return Conflict(f"{what} is already recorded", field=field, rule="no-duplicate")


class Command(BaseModel):
    """What a use case is asked to do, validated: unknown fields refused, text stripped. The API's
    request bodies (``entrypoints/schemas_<topic>.py``) are these with their examples."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
