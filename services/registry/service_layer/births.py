"""Registering births: one per birth medical certificate, in order, to parents on record."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from services.registry.adapters import repository as repo
from services.registry.domain import rules
from services.registry.domain.births import birth_payload
from services.registry.domain.family import check_parents
from services.registry.service_layer.context import Context, announce
from services.registry.service_layer.persons import known_person
from services.registry.service_layer.pregnancies import close_open_pregnancy
from shared.errors import RuleViolation


async def register_birth(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Record a birth (one per birth medical certificate) and announce ``birth.registered.v2``.

    The mother's open pregnancy record, if this registry keeps one, is closed with outcome ``birth``.
    """
    mother = body["mother_id_number"]
    mother_row = await known_person(conn, here, mother, "mother_id_number")
    father = body.get("father_id_number")
    father_row = await known_person(conn, here, father, "father_id_number") if father else None
    if await repo.birth_by_certificate(conn, here, body["medical_certificate_number"]):
        raise rules.duplicate("a birth with this medical certificate number", "medical_certificate_number")
    previous = await repo.births_of_mother(conn, here, mother)
    order = body.get("birth_order") or len(previous) + 1
    check_parents(
        mother_row["sex"],
        father_row["sex"] if father_row else None,
        father_row["birth_date"] if father_row else None,
        body["child_birth_date"],
    )
    rules.check_birth(mother_row["birth_date"], body["child_birth_date"], order, len(previous))
    if previous and body["child_birth_date"] < previous[-1]["child_birth_date"]:
        raise RuleViolation(
            "the child is born before a child already recorded with a lower birth order",
            field="child_birth_date",
            rule="birth-order-consistent",
        )
    birth = {
        **body,
        "birth_id": uuid.uuid4(),
        "birth_order": order,
        "birth_division": body.get("birth_division") or here,
    }
    await repo.insert_birth(conn, here, birth, here)
    event = await announce(
        conn,
        ctx,
        here,
        event_type="birth.registered.v2",
        id_number=mother,
        data=birth_payload(birth),
        origin=mother_row["hukou_division"],
        destination=mother_row["residence_division"],
        record=("births", birth["birth_id"]),
    )
    await close_open_pregnancy(conn, ctx, here, mother_row, body["child_birth_date"])
    return {**birth, "jurisdiction": here, "event_id": event.id}
