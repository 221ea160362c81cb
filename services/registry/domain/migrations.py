"""Rules of moves: departures at the place left, arrivals and returns at the place arrived at. Pure."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from services.registry.domain.rules import Command, check_not_future
from shared.errors import RuleViolation
from shared.identity import DivisionCode, IdNumber, PastDate
from shared.text import PlainText


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
    if frm == to:
        raise RuleViolation(
            "a move goes from one division to another", field="to_division", rule="moves-somewhere"
        )
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
    check_in_date_order(when, known.last_move_date if known is not None else None)
    if kind in ("arrived", "returned") and known is not None:
        check_arrival_follows_departure(here, known)
    if kind == "departed" and known is not None and known.residence_division != here:
        raise RuleViolation(
            "the person does not live here, so cannot depart from here",
            field="from_division",
            rule="depart-from-residence",
        )


def check_in_date_order(
    when: dt.date, before: dt.date | None, after: dt.date | None = None, field: str = "migration_date"
) -> None:
    """A person's moves follow each other in date order: a move comes on or after the move recorded
    before it (for a new move, her last), and a move's corrected date on or before the one after it
    (``field``: the input that names the date)."""
    if before is not None and when < before:
        raise RuleViolation(
            f"{field} is before her previous recorded move", field=field, rule="moves-in-date-order"
        )
    if after is not None and when > after:
        raise RuleViolation(
            f"{field} is after her next recorded move", field=field, rule="moves-in-date-order"
        )


def moved_to(known: Residence | None) -> str | None:
    """Where her moves say she lives (the last one's destination); None when none is on record."""
    return known.last_move_to if known is not None and known.last_move_date is not None else None


def check_residence(residence: str, known: Residence | None, field: str) -> None:
    """A person with moves on record lives where the last of them took her: her residence changes
    by a move (recorded or notified), not by hand (``field``: the input that names it)."""
    last = moved_to(known)
    if last is not None and residence != last:
        raise RuleViolation(
            f"{field} differs from where her last recorded move took her: record the move instead",
            field=field,
            rule="residence-follows-last-move",
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


class RecordMigration(Command):
    """A move to record: a departure, an arrival or a return."""

    kind: Literal["departed", "arrived", "returned"]
    id_number: IdNumber
    from_division: DivisionCode
    to_division: DivisionCode
    migration_date: PastDate
    name: PlainText | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="required when the person is not yet known here",
    )
    hukou_division: DivisionCode | None = Field(default=None, description="required when not yet known here")


class MigrationRecorded(BaseModel):
    """A move as recorded here."""

    migration_id: uuid.UUID
    kind: str
    id_number: str
    from_division: str
    to_division: str
    migration_date: dt.date
    jurisdiction: str
    event_id: uuid.UUID
