"""Registering marriages and their dissolution."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from services.registry.adapters import family
from services.registry.domain import family as rules
from services.registry.service_layer.context import Context, announce
from services.registry.service_layer.persons import known_person
from shared.errors import NotFound, RuleViolation
from shared.events import payloads as p

SPOUSES = ("spouse_a_id_number", "spouse_b_id_number")


async def register_marriage(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Record a marriage between two persons on record; announce ``marriage.registered.v1``."""
    if body["spouse_a_id_number"] == body["spouse_b_id_number"]:
        raise RuleViolation(
            "the spouses must be two different persons", field="spouse_b_id_number", rule="two-persons"
        )
    # Lock both persons in a fixed order so concurrent registrations for one of them queue up.
    rows: dict[str, asyncpg.Record] = {}
    for field in sorted(SPOUSES, key=lambda f: body[f]):
        rows[field] = await known_person(conn, here, body[field], field)
        await conn.execute(
            "SELECT 1 FROM persons WHERE jurisdiction = $1 AND id_number = $2 FOR UPDATE", here, body[field]
        )
    rules.check_marriage(
        body["marriage_date"],
        [(f, rows[f]["sex"], rows[f]["birth_date"]) for f in SPOUSES],
        {f: await family.active_marriage(conn, here, body[f]) for f in SPOUSES},
        {f: await family.last_dissolution(conn, here, body[f]) for f in SPOUSES},
    )
    marriage = {**body, "marriage_id": uuid.uuid4(), "registered_in": here}
    await family.insert_marriage(conn, here, marriage, here)
    payload = p.MarriageRegisteredV1(
        **marriage,
        spouse_a_name=rows["spouse_a_id_number"]["name"],
        spouse_b_name=rows["spouse_b_id_number"]["name"],
    )
    events = []
    # One event per spouse: each spouse's origin and destination hear of it under that spouse's key.
    for field in SPOUSES:
        person = rows[field]
        events.append(
            await announce(
                conn,
                ctx,
                here,
                event_type="marriage.registered.v1",
                id_number=body[field],
                data=payload,
                origin=person["hukou_division"],
                destination=person["residence_division"],
                record=("marriages", marriage["marriage_id"]) if field == SPOUSES[0] else None,
            )
        )
    return {**marriage, "jurisdiction": here, "event_id": events[0].id}


async def dissolve_marriage(
    conn: asyncpg.Connection, ctx: Context, here: str, marriage_id: uuid.UUID, body: dict[str, Any]
) -> dict[str, Any]:
    """Record the end of a marriage (divorce, death, annulment); announce ``marriage.dissolved.v1``."""
    row = await family.get_marriage(conn, here, marriage_id, lock=True)
    if row is None:
        raise NotFound("no such marriage in this jurisdiction's records", field="marriage_id", rule="exists")
    rules.check_dissolution(row["marriage_date"], row["dissolution_date"], body["dissolution_date"])
    await family.dissolve_marriage(conn, here, marriage_id, body["dissolution_date"], body["reason"])
    payload = p.MarriageDissolvedV1(
        marriage_id=marriage_id,
        spouse_a_id_number=row["spouse_a_id_number"],
        spouse_b_id_number=row["spouse_b_id_number"],
        dissolution_date=body["dissolution_date"],
        reason=body["reason"],
    )
    events = []
    for field in SPOUSES:
        person = await known_person(conn, here, row[field], field)
        events.append(
            await announce(
                conn,
                ctx,
                here,
                event_type="marriage.dissolved.v1",
                id_number=row[field],
                data=payload,
                origin=person["hukou_division"],
                destination=person["residence_division"],
            )
        )
    return {
        "marriage_id": marriage_id,
        "spouse_a_id_number": row["spouse_a_id_number"],
        "spouse_b_id_number": row["spouse_b_id_number"],
        "marriage_date": row["marriage_date"],
        "registered_in": row["registered_in"] or here,
        "dissolution_date": body["dissolution_date"],
        "dissolution_reason": body["reason"],
        "jurisdiction": here,
        "event_id": events[0].id,
    }
