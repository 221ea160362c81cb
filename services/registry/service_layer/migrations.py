"""Moves: departures recorded at the place left, arrivals and returns at the place arrived at; and
a counterpart's move applied to our records."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg

from services.registry.adapters import migrations as repo
from services.registry.adapters import persons
from services.registry.adapters.records import Made
from services.registry.domain.conflicts import field_conflicts
from services.registry.domain.migrations import (
    MigrationRecorded,
    RecordMigration,
    Residence,
    check_migration,
    moved_to,
)
from services.registry.domain.persons import sex_from_id_number
from services.registry.service_layer.batches import NotTogether
from services.registry.service_layer.context import (
    Applier,
    Context,
    Outcome,
    Target,
    announce,
    applied,
    disagreeing,
    source,
)
from shared.errors import DomainError, RuleViolation
from shared.events import payloads as p
from shared.events.envelope import new_event_id
from shared.identity import birth_date_of
from shared.outbox import batched, queue_event

_PAYLOADS: dict[str, type[p._MigrationV1]] = {
    "departed": p.MigrationDepartedV1,
    "arrived": p.MigrationArrivedV1,
    "returned": p.MigrationReturnedV1,
}


async def record_migration(
    conn: asyncpg.Connection, ctx: Context, here: str, body: RecordMigration
) -> MigrationRecorded:
    """Record a departure, arrival or return, and announce it as ``migration.<kind>.v1``."""
    kind, id_number = body.kind, body.id_number
    known = await repo.residence(conn, here, id_number)
    person = await persons.get_person(conn, here, id_number)
    name, hukou = _identity(body, person)
    check_migration(kind, here, body.from_division, body.to_division, body.migration_date, known, hukou)
    event_id = new_event_id()  # the event that makes the move (and the person, if first recorded here)
    first_record = person is None and await _first_record(conn, ctx, here, id_number, name, hukou, event_id)
    if person is None and not first_record:
        # A notification about her was applied meanwhile: judge the move against what it says.
        known = await repo.residence(conn, here, id_number)
        check_migration(kind, here, body.from_division, body.to_division, body.migration_date, known, hukou)
    migration = {**body.model_dump(), "migration_id": uuid.uuid4(), "name": name, "hukou_division": hukou}
    event = await announce(
        conn,
        ctx,
        here,
        event_type=f"migration.{kind}.v1",
        id_number=id_number,
        data=_payload(kind, migration),
        origin=hukou,
        destination=body.to_division,
        event_id=event_id,
    )
    await repo.insert_migration(conn, here, migration, kind, Made(here, event_id=event_id))
    await persons.set_residence(conn, here, id_number, body.to_division)
    return MigrationRecorded.model_validate({**migration, "jurisdiction": here, "event_id": event.id})


async def _first_record(
    conn: asyncpg.Connection,
    ctx: Context,
    here: str,
    id_number: str,
    name: str,
    hukou: str,
    event_id: uuid.UUID,
) -> bool:
    """Register a person whom this move is the first record of; False if a notification about
    her was applied in the meantime.

    Her row is written before the event, so this request takes its locks in the order the
    counterpart applier does (the person, then the subject's sequence number): the other order
    deadlocked with a notification about her applied at the same moment (a 500, seen in CI)."""
    person = _person(id_number, name, hukou, here)
    return await persons.insert_person(
        conn, here, person, ctx.subject(id_number), Made(here, event_id=event_id)
    )


def _identity(body: RecordMigration, person: Mapping[str, Any] | None) -> tuple[str, str]:
    """The mover's name and place of household registration: as on record, else as the move gives them."""
    name = body.name or (person["name"] if person else None)
    hukou = (person["hukou_division"] if person else None) or body.hukou_division
    if name is None or hukou is None:
        raise RuleViolation(
            "the person is not known here: give name and hukou_division with the first record",
            field="name",
            rule="first-record-needs-identity",
        )
    return name, hukou


def _person(id_number: str, name: str, hukou: str, residence: str) -> dict[str, Any]:
    """A person first recorded here by a move."""
    return {
        "id_number": id_number,
        "name": name,
        "sex": sex_from_id_number(id_number),
        "birth_date": birth_date_of(id_number),
        "hukou_division": hukou,
        "residence_division": residence,
    }


async def record_migrations(
    conn: asyncpg.Connection,
    ctx: Context,
    here: str,
    bodies: Sequence[RecordMigration],
    traceparents: Sequence[str | None] | None = None,
) -> list[MigrationRecorded | DomainError]:
    """``record_migration`` for a run of a batch's moves, in order, in a few statements for them all:
    the movers' residences (locked) and records read, each move judged in memory against what the
    ones before it left, then the people first recorded, the events, the moves and the residences
    written. A move a rule refuses is answered with the refusal and writes nothing. If a
    notification about someone first recorded here was applied meanwhile, ``NotTogether``: the
    caller records the run one move at a time. ``traceparents``: the trace each move's event
    carries, where the moves came from different requests (else the context's)."""
    numbers = [b.id_number for b in bodies]
    known = await repo.residences(conn, [(here, n) for n in numbers])
    people = await persons.get_people(conn, here, numbers)
    refused: dict[int, DomainError] = {}
    accepted: list[tuple[int, RecordMigration, dict[str, Any], bool]] = []
    traces = list(traceparents) if traceparents is not None else [ctx.traceparent] * len(bodies)
    for i, body in enumerate(bodies):
        try:
            accepted.append((i, body, *_judged(here, body, known, people)))
        except RuleViolation as e:
            refused[i] = e
    recorded = await _write_moves(conn, ctx, here, accepted, traces)
    return [refused[i] if i in refused else recorded[i] for i in range(len(bodies))]


def _judged(
    here: str,
    body: RecordMigration,
    known: dict[tuple[str, str], Residence],
    people: dict[str, Mapping[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """The move as ``record_migration`` records it, and whether it is its mover's first record
    here; ``known`` and ``people`` then hold what it leaves, as the next move will find them."""
    person = people.get(body.id_number)
    name, hukou = _identity(body, person)
    key = (here, body.id_number)
    check_migration(
        body.kind, here, body.from_division, body.to_division, body.migration_date, known.get(key), hukou
    )
    people[body.id_number] = person or {"name": name, "hukou_division": hukou}
    known[key] = Residence(hukou, body.to_division, body.migration_date, body.kind, body.to_division)
    migration = {**body.model_dump(), "migration_id": uuid.uuid4(), "name": name, "hukou_division": hukou}
    return migration, person is None


async def _write_moves(
    conn: asyncpg.Connection,
    ctx: Context,
    here: str,
    accepted: list[tuple[int, RecordMigration, dict[str, Any], bool]],
    traces: list[str | None],
) -> dict[int, MigrationRecorded]:
    """The judged moves written: the people first recorded (before the events, in the order of
    locks ``_first_record`` keeps), each move's event, the moves, where each mover lives now."""
    recorded: dict[int, MigrationRecorded] = {}
    firsts, moves, residence = [], [], {}
    async with batched(conn):  # the events are numbered and written together when it ends
        for i, body, migration, first in accepted:
            event_id = await queue_event(
                conn,
                event_type=f"migration.{body.kind}.v1",
                source=source(here),
                subject=ctx.subject(body.id_number),
                data=_payload(body.kind, migration),
                origin=migration["hukou_division"],
                destination=body.to_division,
                traceparent=traces[i],
            )
            made = Made(here, event_id=event_id)
            if first:
                person = _person(body.id_number, migration["name"], migration["hukou_division"], here)
                firsts.append((here, person, ctx.subject(body.id_number), made))
            moves.append((here, migration, body.kind, made))
            residence[(here, body.id_number)] = body.to_division
            recorded[i] = MigrationRecorded.model_validate(
                {**migration, "jurisdiction": here, "event_id": event_id}
            )
        inserted = await persons.insert_persons(conn, firsts)
        if len(inserted) < len(firsts):
            raise NotTogether("a notification about someone first recorded here was applied meanwhile")
        await repo.insert_migrations(conn, moves)
        await persons.set_residences(conn, _changed(residence, inserted, dict.fromkeys(inserted, here)))
    return recorded


@contextlib.asynccontextmanager
async def residence_follows(conn: asyncpg.Connection, here: str, id_number: str) -> AsyncIterator[None]:
    """Around a change to her moves that records none (a reconciliation repair restores a move of
    hers, or brings one in line): afterwards she lives where her last move now takes her
    (``residence-follows-last-move``), as recording that move, or being notified of it, would have
    left her. Her row is locked first, as recording a move locks it before writing, and her moves
    read only then: a move recorded meanwhile is seen, not lost to a read from before it."""
    await persons.lock_person(conn, here, id_number)
    yield
    known = await repo.residence(conn, here, id_number)
    last = moved_to(known)
    if known is not None and last is not None and last != known.residence_division:
        await persons.set_residence(conn, here, id_number, last)


def _changed(
    residence: dict[tuple[str, str], str],
    inserted: set[tuple[str, str]],
    inserted_with: dict[tuple[str, str], str],
) -> dict[tuple[str, str], str]:
    """The residences to write: those of people on record before, and of people just inserted
    (``inserted``) whose last move took them elsewhere than the insert put them (``inserted_with``).
    Writing the same residence again would rewrite the row and its index entries for nothing."""
    return {key: r for key, r in residence.items() if key not in inserted or inserted_with[key] != r}


def _payload(kind: str, migration: dict[str, Any]) -> p._MigrationV1:
    payload_cls = _PAYLOADS[kind]
    return payload_cls(**{k: migration[k] for k in payload_cls.model_fields})


# The moves a counterpart notifies: event type -> kind of move.
KINDS = {f"migration.{kind}.v1": kind for kind in _PAYLOADS}


def migration_applier(kind: str) -> Applier:
    """The counterpart applier of one kind of move (``migration.<kind>.v1``)."""

    async def apply(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
        return (await apply_migrations(conn, [(t, kind, d)]))[0]

    return apply


# A counterpart's move to apply: who sent it to whom, its kind, and the move.
Move = tuple[Target, str, dict[str, Any]]


async def apply_migrations(conn: asyncpg.Connection, moves: Sequence[Move]) -> list[Outcome]:
    """Counterparts' moves applied to our records in list order, in four statements for them all:
    the people's residences read (and locked), the people not on record yet inserted, the moves
    inserted, the residences that changed written. Each move's outcome, in list order.

    A move older than one already recorded (a late, out-of-order notification) is kept in the
    history but does not overwrite where the person lives now; "already recorded" includes the
    moves earlier in the list, as if they had been applied one by one."""
    last_move = {
        key: known.last_move_date
        for key, known in (
            await repo.residences(conn, [(t.here, d["id_number"]) for t, _, d in moves])
        ).items()
    }
    new_people = await persons.insert_persons(
        conn,
        [
            (
                t.here,
                _person(d["id_number"], d["name"], d["hukou_division"], d["to_division"]),
                t.subject(d["id_number"]),
                t.made,
            )
            for t, _, d in moves
        ],
    )
    inserted_with: dict[tuple[str, str], str] = {}
    for t, _, d in moves:  # a person named twice was inserted with the first move's residence
        inserted_with.setdefault((t.here, d["id_number"]), d["to_division"])
    inserted = await repo.insert_migrations(conn, [(t.here, d, kind, t.made) for t, kind, d in moves])
    fresh = set(inserted)
    residence: dict[tuple[str, str], str] = {}
    for t, _, d in moves:
        key, when = (t.here, d["id_number"]), d["migration_date"]
        if d["migration_id"] not in inserted:
            continue
        inserted.discard(d["migration_id"])  # a move named twice is applied once
        last = last_move.get(key)
        if last is None or when >= last:
            residence[key] = d["to_division"]
            last_move[key] = when
    await persons.set_residences(conn, _changed(residence, new_people, inserted_with))
    return await _outcomes(conn, moves, fresh)


async def _outcomes(conn: asyncpg.Connection, moves: Sequence[Move], fresh: set[uuid.UUID]) -> list[Outcome]:
    """Each move's answer: ``applied`` when this list inserted it (its first mention), or when the
    move held under its key is this one; else the fields that disagree. ``fresh``: the ids inserted."""
    first: set[tuple[str, uuid.UUID]] = set()
    again: list[int] = []
    for i, (t, _, d) in enumerate(moves):
        key = (t.here, d["migration_id"])
        if key not in first and d["migration_id"] in fresh:
            first.add(key)
        else:
            again.append(i)
    if not again:  # the usual batch: every move new here
        return [applied() for _ in moves]
    held = await repo.held_moves(conn, [(moves[i][0].here, moves[i][2]["migration_id"]) for i in again])
    outcomes = [applied() for _ in moves]
    for i in again:
        t, kind, d = moves[i]
        row = held.get((t.here, d["migration_id"]))
        conflicts = field_conflicts(dict(row or {}), {**d, "kind": kind}, _MOVE_FIELDS)
        outcomes[i] = disagreeing(conflicts, "this move is recorded here otherwise")
    return outcomes


_MOVE_FIELDS = ("id_number", "kind", "from_division", "to_division", "migration_date")
