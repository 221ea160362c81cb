"""Bulk import of persons (a legacy roster), batch by batch, resumable and exactly once.

The registry's use case behind ``exchangectl import``: each person is checked with the same
rule as ``POST /v1/persons`` (``domain.persons.check_person``) and written with its
``person.registered.v1`` outbox row, its event id on the row, as ``register_person`` writes
one. A batch's persons, events, rejects and progress mark are one unit of work (the caller's
transaction), so a stopped import resumes after the last committed line, nothing lost and
nothing twice. The registry's running relay publishes the events as it does for the API.

Rows arrive already parsed by the edge's schema (``PersonIn``, as the route parses a body);
what the edge refused comes along as rejects, so one table lists every refused line.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.registry.adapters import imports as store
from services.registry.domain.persons import check_person, check_person_place
from services.registry.service_layer.context import Context, source
from shared.errors import DomainError
from shared.events.envelope import Envelope, new_event_id
from shared.events.payloads import PersonRegisteredV1
from shared.outbox import add_events, make_event, next_sequences

Reject = tuple[int, str | None, str, str]  # line, field, rule, message
# line, the person, its subject key, the id of the event that announces it
_Person = tuple[int, dict[str, Any], str, uuid.UUID]

# The fields that make a row "the same person" as the one the registry holds.
SAME_PERSON = ("name", "sex", "birth_date", "hukou_division", "residence_division")


class ImportBusy(RuntimeError):
    """Another process is importing the same roster into the same jurisdiction."""


@dataclass(frozen=True)
class ImportBatch:
    """Consecutive roster lines ``first_line``..``last_line``: the persons the edge's schema
    accepted, and the lines it refused (``refused``)."""

    import_id: str
    first_line: int
    last_line: int
    people: list[tuple[int, dict[str, Any]]]
    refused: list[Reject]
    # first line of each identity number in the whole roster, also over lines a resumed run
    # skipped: a number not inserted is then either repeated in the roster or registered before it
    first_lines: Mapping[str, int]


@dataclass(frozen=True)
class BatchOutcome:
    imported: int
    unchanged: int
    rejected: int


async def start(conn: asyncpg.Connection, here: str, import_id: str, file_name: str) -> Any:
    """The import's progress row (made on its first run): ``last_line``, ``state`` and the totals."""
    return await store.start_run(conn, import_id, here, file_name)


async def progress(conn: asyncpg.Connection, here: str, import_id: str) -> Any:
    return await store.get_run(conn, import_id, here)


async def finish(conn: asyncpg.Connection, here: str, import_id: str) -> None:
    await store.finish_run(conn, import_id, here)


async def rejects(conn: asyncpg.Connection, here: str, import_id: str) -> list[asyncpg.Record]:
    """Every refused line of the import, in line order, with the rule it broke."""
    return await store.rejects(conn, import_id, here)


async def import_batch(conn: asyncpg.Connection, ctx: Context, here: str, batch: ImportBatch) -> BatchOutcome:
    """Register a batch's persons and announce each; inside the caller's transaction.

    Raises ``ImportBusy`` when another run committed these lines first (the progress row is
    locked, so two runs never write the same lines).
    """
    run = await store.get_run(conn, batch.import_id, here, lock=True)
    if run["last_line"] >= batch.first_line:
        raise ImportBusy(f"lines from {batch.first_line} were imported by another run")
    people, rows, refused = _checked(ctx, here, batch)
    inserted = await store.insert_persons(conn, rows)
    fresh = [x for x in people if x[1]["id_number"] in inserted]
    held_before = [(line, p) for line, p, _, _ in people if p["id_number"] not in inserted]
    unchanged, repeated = await _not_inserted(conn, here, held_before, batch.first_lines)
    refused = sorted(refused + repeated)
    sequences = await next_sequences(conn, [s for _, _, s, _ in fresh], source(here))
    await add_events(conn, _events(here, fresh, sequences))
    counts = (len(fresh), unchanged)
    await store.record_batch(conn, batch.import_id, here, batch.last_line, counts, refused)
    return BatchOutcome(len(fresh), unchanged, len(refused))


def _checked(
    ctx: Context, here: str, batch: ImportBatch
) -> tuple[list[_Person], list[tuple[Any, ...]], list[Reject]]:
    """The batch's registrable persons (the first row of a number wins, as the database would)
    with their rows for COPY, and the lines refused here or at the edge."""
    people: list[_Person] = []
    rows: list[tuple[Any, ...]] = []
    refused = list(batch.refused)
    seen: dict[str, int] = {}
    for line, person in batch.people:
        number = person["id_number"]
        person = {
            **person,
            "residence_division": person.get("residence_division") or person["hukou_division"],
        }
        try:
            check_person(number, person["sex"], person["birth_date"])
            check_person_place(here, person["hukou_division"], person["residence_division"])
        except DomainError as e:
            refused.append((line, e.field, e.rule or "invalid", f"{e.field}: {e.detail}"))
            continue
        if number in seen:
            refused.append(
                (line, "id_number", "no-duplicate", f"id_number: same identity number as line {seen[number]}")
            )
            continue
        seen[number] = line
        subject, event_id = ctx.subject(number), new_event_id()  # the row records the event that announced it
        people.append((line, person, subject, event_id))
        rows.append((line, here, number, subject, *(person[f] for f in SAME_PERSON), here, event_id))
    return people, rows, refused


async def _not_inserted(
    conn: asyncpg.Connection,
    here: str,
    people: list[tuple[int, dict[str, Any]]],
    first_lines: Mapping[str, int],
) -> tuple[int, list[Reject]]:
    """Rows whose person the registry already held: a repeat of an earlier roster line is
    refused; a person registered before with the same details is skipped (a corrected roster
    can be imported again); with other details it is refused, as the API refuses it."""
    if not people:
        return 0, []
    held = await store.registered(conn, here, [p["id_number"] for _, p in people])
    unchanged, refused = 0, list[Reject]()
    for line, person in people:
        number = person["id_number"]
        first = first_lines.get(number, line)
        if first < line:
            refused.append(
                (line, "id_number", "no-duplicate", f"id_number: same identity number as line {first}")
            )
            continue
        existing = held.get(number)
        differ = [f for f in SAME_PERSON if existing is not None and existing[f] != person[f]]
        if not differ:
            unchanged += 1
            continue
        message = f"id_number: already registered with other {', '.join(differ)}"
        refused.append((line, "id_number", "no-duplicate", message))
    return unchanged, refused


def _events(here: str, fresh: list[_Person], sequences: dict[str, int]) -> list[Envelope[Any]]:
    """The batch's ``person.registered.v1`` envelopes, with the event ids the person rows hold.

    The first is built and validated by ``make_event``; the others are copies of it with their
    own id, time, subject, sequence, divisions and data, all of which were validated already
    (the person as ``PersonIn``, the subject is our HMAC). Validating each envelope again cost
    more than everything else the import does for a row.
    """
    if not fresh:
        return []
    _, first, subject, event_id = fresh[0]
    template = make_event(
        event_type="person.registered.v1",
        source=source(here),
        subject=subject,
        data=PersonRegisteredV1.model_construct(**first),
        sequence=sequences[subject],
        origin=first["hukou_division"],
        destination=first["residence_division"],
    ).model_copy(update={"id": event_id})
    events = [template]
    for _, person, subject, event_id in fresh[1:]:
        update = {
            "id": event_id,
            "time": dt.datetime.now(dt.UTC),
            "subject": subject,
            "sequence": sequences[subject],
            "origin": person["hukou_division"],
            "destination": person["residence_division"],
            "data": PersonRegisteredV1.model_construct(**person),
        }
        events.append(template.model_copy(update=update))
    return events
