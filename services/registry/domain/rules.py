"""Registration rules a registrar expects. Pure functions: no I/O, easy to test."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from shared.errors import Conflict, RuleViolation


def sex_from_id_number(id_number: str) -> str:
    """GB 11643: the 17th digit is odd for men, even for women."""
    return "M" if int(id_number[16]) % 2 else "F"


def check_not_future(value: dt.date, field: str) -> None:
    if value > dt.date.today():
        raise RuleViolation(f"{field} is in the future", field=field, rule="not-in-future")


def check_person_birth_date(id_number_birth: dt.date, given: dt.date) -> None:
    if given != id_number_birth:
        raise RuleViolation(
            "birth_date differs from the birth date in the identity number",
            field="birth_date",
            rule="birth-date-matches-id-number",
        )


@dataclass(frozen=True)
class Residence:
    """Where the registry believes a person lives, and the last move it knows of."""

    hukou_division: str
    residence_division: str
    last_move_date: dt.date | None
    last_move_kind: str | None = None
    last_move_to: str | None = None


def check_migration(
    kind: str, here: str, frm: str, to: str, when: dt.date, known: Residence | None, hukou: str | None
) -> None:
    """A migration history that makes sense, seen from the recording jurisdiction ``here``."""
    check_not_future(when, "migration_date")
    if kind == "departed" and frm != here:
        raise RuleViolation(
            "a departure is recorded where the person leaves from",
            field="from_division",
            rule="departure-recorded-at-origin",
        )
    if kind in ("arrived", "returned") and to != here:
        raise RuleViolation(
            "an arrival is recorded where the person arrives",
            field="to_division",
            rule="arrival-recorded-at-destination",
        )
    if kind == "returned" and hukou is not None and to != hukou:
        raise RuleViolation(
            "a return goes back to the place of household registration",
            field="to_division",
            rule="return-to-hukou",
        )
    if kind == "departed" and known is None:
        raise RuleViolation("the person is not registered here", field="id_number", rule="person-must-exist")
    if known is not None and known.last_move_date is not None and when < known.last_move_date:
        raise RuleViolation(
            "migration_date is before the last recorded move",
            field="migration_date",
            rule="moves-in-date-order",
        )
    if kind in ("arrived", "returned") and known is not None:
        check_arrival_follows_departure(here, known)
    if kind == "departed" and known is not None and known.residence_division != here:
        raise RuleViolation(
            "the person does not live here, so cannot depart from here",
            field="from_division",
            rule="depart-from-residence",
        )


def check_arrival_follows_departure(here: str, known: Residence) -> None:
    """No arrival without a departure, unless it is the first record of the person here.

    A person already living here per our records may only arrive again if the last move we know
    of is a departure towards here (recorded at the origin and notified to us) still to be met.
    """
    pending_departure = known.last_move_kind == "departed" and known.last_move_to == here
    if known.residence_division == here and not pending_departure:
        raise RuleViolation(
            "the person already lives here and no departure towards here is recorded",
            field="kind",
            rule="arrival-needs-departure",
        )


def birth_conflicts(
    existing: dict[str, Any], incoming: dict[str, Any], fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Fields on which two records of the same birth disagree."""
    return [
        {"field": f, "ours": _plain(existing.get(f)), "theirs": _plain(incoming.get(f))}
        for f in fields
        if _plain(existing.get(f)) != _plain(incoming.get(f))
    ]


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


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


def ensure_served(jurisdiction: str | None, served: frozenset[str]) -> str:
    if jurisdiction is None or jurisdiction not in served:
        from shared.errors import Forbidden

        raise Forbidden(
            "this registry does not keep the records of the client's jurisdiction", rule="jurisdiction"
        )
    return jurisdiction


def duplicate(what: str, field: str) -> Conflict:
    return Conflict(f"{what} is already recorded", field=field, rule="no-duplicate")
