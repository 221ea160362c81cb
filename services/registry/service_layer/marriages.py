"""Marriages and their dissolution, registered here or applied from a counterpart's notification."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from pydantic import BaseModel

from services.registry.adapters import marriages as repo
from services.registry.adapters import persons
from services.registry.adapters.records import Made
from services.registry.domain.conflicts import field_conflicts
from services.registry.domain.marriages import (
    DissolveMarriage,
    MarriageRecorded,
    RegisterMarriage,
    check_dissolution,
    check_marriage,
)
from services.registry.service_layer.context import (
    Context,
    Outcome,
    Target,
    announce_about,
    applied,
    apply_end,
    disagreeing,
)
from services.registry.service_layer.persons import known_person
from shared.errors import NotFound, RuleViolation
from shared.events import payloads as p
from shared.events.envelope import Envelope, new_event_id

SPOUSES = ("spouse_a_id_number", "spouse_b_id_number")


async def register_marriage(
    conn: asyncpg.Connection, ctx: Context, here: str, body: RegisterMarriage
) -> MarriageRecorded:
    """Record a marriage between two persons on record; announce ``marriage.registered.v1``."""
    if body.spouse_a_id_number == body.spouse_b_id_number:
        raise RuleViolation(
            "the spouses must be two different persons", field="spouse_b_id_number", rule="two-persons"
        )
    # Lock both persons in a fixed order so concurrent registrations for one of them queue up.
    rows: dict[str, asyncpg.Record] = {}
    ids = {"spouse_a_id_number": body.spouse_a_id_number, "spouse_b_id_number": body.spouse_b_id_number}
    for field in sorted(SPOUSES, key=lambda f: ids[f]):
        rows[field] = await known_person(conn, here, ids[field], field)
        await persons.lock_person(conn, here, ids[field])
    check_marriage(
        body.marriage_date,
        [(f, rows[f]["sex"], rows[f]["birth_date"]) for f in SPOUSES],
        {f: await repo.active_marriage(conn, here, ids[f]) for f in SPOUSES},
        {f: await repo.last_dissolution(conn, here, ids[f]) for f in SPOUSES},
    )
    marriage = {**body.model_dump(), "marriage_id": uuid.uuid4(), "registered_in": here}
    event_id = new_event_id()  # the first spouse's event made the record
    await repo.insert_marriage(conn, here, marriage, Made(here, event_id=event_id))
    payload = p.MarriageRegisteredV1(
        **marriage,
        spouse_a_name=rows["spouse_a_id_number"]["name"],
        spouse_b_name=rows["spouse_b_id_number"]["name"],
    )
    events = await _announce_to_spouses(conn, ctx, here, "marriage.registered.v1", payload, rows, event_id)
    return MarriageRecorded.model_validate({**marriage, "jurisdiction": here, "event_id": events[0].id})


async def dissolve_marriage(
    conn: asyncpg.Connection, ctx: Context, here: str, marriage_id: uuid.UUID, body: DissolveMarriage
) -> MarriageRecorded:
    """Record the end of a marriage (divorce, death, annulment); announce ``marriage.dissolved.v1``."""
    row = await repo.get_marriage(conn, here, marriage_id, lock=True)
    if row is None:
        raise NotFound("no such marriage in this jurisdiction's records", field="marriage_id", rule="exists")
    check_dissolution(row["marriage_date"], row["dissolution_date"], body.dissolution_date)
    await repo.dissolve_marriage(conn, here, marriage_id, body.dissolution_date, body.reason, here)
    payload = p.MarriageDissolvedV1(
        marriage_id=marriage_id,
        spouse_a_id_number=row["spouse_a_id_number"],
        spouse_b_id_number=row["spouse_b_id_number"],
        dissolution_date=body.dissolution_date,
        reason=body.reason,
    )
    spouses = {field: await known_person(conn, here, row[field], field) for field in SPOUSES}
    events = await _announce_to_spouses(conn, ctx, here, "marriage.dissolved.v1", payload, spouses)
    return MarriageRecorded.model_validate(
        {
            "marriage_id": marriage_id,
            "spouse_a_id_number": row["spouse_a_id_number"],
            "spouse_b_id_number": row["spouse_b_id_number"],
            "marriage_date": row["marriage_date"],
            "registered_in": row["registered_in"] or here,
            "dissolution_date": body.dissolution_date,
            "dissolution_reason": body.reason,
            "jurisdiction": here,
            "event_id": events[0].id,
        }
    )


async def _announce_to_spouses(
    conn: asyncpg.Connection,
    ctx: Context,
    here: str,
    event_type: str,
    payload: BaseModel,
    spouses: dict[str, asyncpg.Record],
    event_id: uuid.UUID | None = None,
) -> list[Envelope[Any]]:
    """One event per spouse: each spouse's origin and destination hear of it under that spouse's
    key. ``event_id``, when given, is the first spouse's (the one that made the record)."""
    return [
        await announce_about(
            conn, ctx, here, spouses[field], event_type, payload, event_id if field == SPOUSES[0] else None
        )
        for field in SPOUSES
    ]


async def apply_marriage(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    here = t.here
    same = await repo.get_marriage(conn, here, d["marriage_id"])
    if same is not None:
        conflicts = field_conflicts(dict(same), d, (*SPOUSES, "marriage_date"))
        return disagreeing(conflicts, "this marriage is recorded here otherwise")
    conflicts = []
    for field in SPOUSES:
        if await repo.active_marriage(conn, here, d[field]):
            conflicts.append({"field": field, "ours": "married", "theirs": "marrying"})
    if conflicts:
        return "conflict", conflicts, "a spouse has another active marriage in our records"
    await repo.insert_marriage(conn, here, d, t.made)
    return applied()


async def apply_dissolution(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    row = await repo.get_marriage(conn, t.here, d["marriage_id"], lock=True)
    if row is not None and row["dissolution_date"] is None and d["dissolution_date"] < row["marriage_date"]:
        conflicts = field_conflicts(dict(row), d, ("marriage_date",))
        return "conflict", conflicts, "dissolution before the marriage date"
    theirs = {"dissolution_date": d["dissolution_date"], "dissolution_reason": d["reason"]}

    async def dissolve() -> None:
        await repo.dissolve_marriage(
            conn, t.here, d["marriage_id"], d["dissolution_date"], d["reason"], t.source
        )

    return await apply_end(
        row, theirs, ("dissolution_date", "dissolution_reason"), ("marriage", "ended"), dissolve
    )
