"""Registering persons, and finding the persons other use cases refer to."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.registry.adapters import repository as repo
from services.registry.domain import rules
from services.registry.domain.persons import check_person
from services.registry.service_layer.context import Context, announce
from shared.errors import RuleViolation
from shared.events import payloads as p


async def known_person(conn: asyncpg.Connection, here: str, id_number: str, field: str) -> asyncpg.Record:
    """A person in this jurisdiction's records (our residents and the migrants we were told of)."""
    person = await repo.get_person(conn, here, id_number)
    if person is None:
        raise RuleViolation(
            f"{field} names a person who is not in this jurisdiction's records",
            field=field,
            rule="person-must-exist",
        )
    return person


async def register_person(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Record a person in the jurisdiction's register and announce ``person.registered.v1``."""
    check_person(body["id_number"], body["sex"], body["birth_date"])
    person = {**body, "residence_division": body.get("residence_division") or body["hukou_division"]}
    subject = ctx.subject(person["id_number"])
    if not await repo.insert_person(conn, here, person, subject, here):
        raise rules.duplicate("a person with this identity number", "id_number")
    event = await announce(
        conn,
        ctx,
        here,
        event_type="person.registered.v1",
        id_number=person["id_number"],
        data=p.PersonRegisteredV1(**person),
        origin=person["hukou_division"],
        destination=person["residence_division"],
        record=("persons", person["id_number"]),
    )
    return {**person, "jurisdiction": here, "source_division": here, "event_id": event.id}
