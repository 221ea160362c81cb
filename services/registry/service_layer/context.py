"""What every use case needs besides the connection, and how a recorded fact is announced; what a
counterpart applier is given (``Target``) and answers (``Outcome``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel

from services.registry.adapters.records import Made
from services.registry.domain.conflicts import field_conflicts
from services.registry.settings import RegistrySettings
from shared.events.envelope import Envelope
from shared.identity import subject_key
from shared.outbox import add_event


@dataclass(frozen=True)
class Context:
    """Configuration, the calling client and the caller's trace."""

    settings: RegistrySettings
    traceparent: str | None = None
    client_id: str = "registry"

    @property
    def secret(self) -> bytes:
        return self.settings.subject_key_secret.get_secret_value().encode()

    def subject(self, id_number: str) -> str:
        return subject_key(id_number, self.secret)


def source(jurisdiction: str) -> str:
    return f"/registry/{jurisdiction}"


async def announce(
    conn: asyncpg.Connection,
    ctx: Context,
    here: str,
    *,
    event_type: str,
    id_number: str,
    data: BaseModel,
    origin: str | None,
    destination: str | None,
    event_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """Write the event to the outbox in the record's transaction.

    ``event_id``: the id the use case took (``new_event_id``) before it wrote the record, so the
    record carries the event that made it in its one INSERT (a correction names that event).

    Who receives the person's data through the exchange (origin and destination other than here)
    is read back from the outbox by the subject-access log: writing an audit row here would take
    the audit chain's lock in every write and serialise all writers.
    """
    subject = ctx.subject(id_number)
    event = await add_event(
        conn,
        event_type=event_type,
        source=source(here),
        subject=subject,
        data=data,
        origin=origin,
        destination=destination,
        traceparent=ctx.traceparent,
        event_id=event_id,
    )
    return event


async def announce_about(
    conn: asyncpg.Connection,
    ctx: Context,
    here: str,
    person: Mapping[str, Any],
    event_type: str,
    data: BaseModel,
    event_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """``announce`` an event about a person on record: under their key, to their origin and
    destination."""
    return await announce(
        conn,
        ctx,
        here,
        event_type=event_type,
        id_number=person["id_number"],
        data=data,
        origin=person["hukou_division"],
        destination=person["residence_division"],
        event_id=event_id,
    )


# A counterpart applier's answer for the feedback: outcome, conflicts, reason.
Outcome = tuple[str, list[dict[str, Any]], str | None]


def applied() -> Outcome:
    return "applied", [], None


@dataclass(frozen=True)
class Target:
    """What a counterpart applier is given: the receiving jurisdiction, who sent the event, and
    which event it was."""

    here: str
    source: str
    event_id: uuid.UUID
    secret: bytes

    def subject(self, id_number: str) -> str:
        return subject_key(id_number, self.secret)

    @property
    def made(self) -> Made:
        """A copy of the counterpart's record: made by its event, from its division."""
        return Made(self.source, self.event_id)


Applier = Callable[[asyncpg.Connection, Target, dict[str, Any]], Awaitable[Outcome]]


def rejected(reason: str) -> Outcome:
    """Not applied: our records cannot take it (the reason says why)."""
    return "rejected", [], reason


def disagreeing(conflicts: list[dict[str, Any]], reason: str) -> Outcome:
    """``conflict`` with the fields that disagree, or ``applied`` when none does."""
    return ("conflict", conflicts, reason) if conflicts else applied()


async def apply_end(
    row: asyncpg.Record | None,
    theirs: dict[str, Any],
    fields: tuple[str, str],
    what: tuple[str, str],
    end: Callable[[], Awaitable[None]],
) -> Outcome:
    """A counterpart's end of a record (a marriage dissolved, a pregnancy closed) applied to ours:
    ``row`` (locked) and the counterpart's values of its two end ``fields`` (date first). Not in
    our records: rejected; already ended here: applied when it ended alike, else the conflict;
    otherwise ``end`` writes it. ``what``: the record's name and how it ends ("was closed")."""
    name, ended = what
    if row is None:
        return rejected(f"the {name} is not in our records")
    if row[fields[0]] is not None:
        return disagreeing(field_conflicts(dict(row), theirs, fields), f"the {name} {ended} otherwise here")
    await end()
    return applied()
