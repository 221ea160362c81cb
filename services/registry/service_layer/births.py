"""Births: one per birth medical certificate, in order, to parents on record; and a counterpart's
birth applied to our records."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from services.registry.adapters import births as repo
from services.registry.adapters import persons
from services.registry.adapters.records import Made
from services.registry.domain.births import (
    BIRTH_FIELDS,
    BirthRecorded,
    RegisterBirth,
    birth_payload,
    birth_record,
    check_birth,
    check_parents,
)
from services.registry.domain.conflicts import field_conflicts
from services.registry.domain.rules import duplicate
from services.registry.service_layer.context import (
    Context,
    Outcome,
    Target,
    announce_about,
    applied,
    disagreeing,
)
from services.registry.service_layer.persons import known_person
from services.registry.service_layer.pregnancies import close_open_pregnancy
from shared.errors import RuleViolation
from shared.events.envelope import new_event_id


async def register_birth(
    conn: asyncpg.Connection, ctx: Context, here: str, body: RegisterBirth
) -> BirthRecorded:
    """Record a birth (one per birth medical certificate) and announce ``birth.registered.v2``.

    The mother's open pregnancy record, if this registry keeps one, is closed with outcome ``birth``.
    """
    mother = body.mother_id_number
    mother_row = await known_person(conn, here, mother, "mother_id_number")
    await persons.lock_person(conn, here, mother)  # her births are numbered in turn: one at a time
    father = body.father_id_number
    father_row = await known_person(conn, here, father, "father_id_number") if father else None
    if await repo.birth_by_certificate(conn, here, body.medical_certificate_number):
        raise duplicate("a birth with this medical certificate number", "medical_certificate_number")
    previous = await repo.births_of_mother(conn, here, mother)
    order = body.birth_order or len(previous) + 1
    check_parents(
        mother_row["sex"],
        father_row["sex"] if father_row else None,
        father_row["birth_date"] if father_row else None,
        body.child_birth_date,
    )
    check_birth(mother_row["birth_date"], body.child_birth_date, order, len(previous))
    if previous and body.child_birth_date < previous[-1]["child_birth_date"]:
        raise RuleViolation(
            "the child is born before a child already recorded with a lower birth order",
            field="child_birth_date",
            rule="birth-order-consistent",
        )
    birth = {
        **body.model_dump(),
        "birth_id": uuid.uuid4(),
        "birth_order": order,
        "birth_division": here,
    }
    event_id = new_event_id()
    if not await repo.insert_birth(conn, here, birth, Made(here, event_id=event_id)):
        # a counterpart's copy of this birth (its certificate, or her birth of this order) came in
        # meanwhile: nothing was recorded here, so nothing is announced
        raise duplicate(
            "a birth with this medical certificate number or birth order", "medical_certificate_number"
        )
    event = await announce_about(
        conn, ctx, here, mother_row, "birth.registered.v2", birth_payload(birth), event_id
    )
    await close_open_pregnancy(conn, ctx, here, mother_row, body.child_birth_date)
    return BirthRecorded.model_validate({**birth, "jurisdiction": here, "event_id": event.id})


async def apply_birth(conn: asyncpg.Connection, t: Target, payload: dict[str, Any]) -> Outcome:
    """A counterpart's birth: kept unless it is recorded here otherwise, or contradicts the mother's
    other births (same date under another name, same birth order)."""
    d = birth_record(payload)
    here = t.here
    same = await repo.birth_by_certificate(conn, here, d["medical_certificate_number"])
    if same is not None:
        conflicts = field_conflicts(dict(same), d, BIRTH_FIELDS)
        return disagreeing(conflicts, "this birth is recorded here with other details")
    for other in await repo.births_of_mother(conn, here, d["mother_id_number"]):
        if other["child_birth_date"] == d["child_birth_date"] and other["child_name"] != d["child_name"]:
            conflicts = field_conflicts(dict(other), d, ("medical_certificate_number", *BIRTH_FIELDS))
            return "conflict", conflicts, "another birth is recorded here for this mother and date"
        if other["birth_order"] == d["birth_order"]:
            conflicts = field_conflicts(dict(other), d, ("medical_certificate_number", *BIRTH_FIELDS))
            return "conflict", conflicts, "another birth of this mother has this birth order here"
    if not await repo.insert_birth(conn, here, d, t.made):  # another birth holds its key here
        held = await repo.birth_by_key(conn, here, d["birth_id"])
        conflicts = field_conflicts(dict(held or {}), d, ("medical_certificate_number", *BIRTH_FIELDS))
        return "conflict", conflicts, "another birth is recorded here under this key"
    return applied()
