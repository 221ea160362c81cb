"""Pregnancy records (sensitive): registered for maternal care, closed when the pregnancy ends."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters import family
from services.registry.domain import family as rules
from services.registry.service_layer.context import Context, announce
from services.registry.service_layer.persons import known_person
from shared.errors import NotFound
from shared.events import payloads as p


async def register_pregnancy(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Record a pregnancy of a woman on record; announce ``pregnancy.registered.v1``.

    Only the mother's origin and destination registries receive it (the exchange routes by those).
    """
    mother = await known_person(conn, here, body["mother_id_number"], "mother_id_number")
    await conn.execute(
        "SELECT 1 FROM persons WHERE jurisdiction = $1 AND id_number = $2 FOR UPDATE",
        here,
        mother["id_number"],
    )
    registered_on = body.get("registered_on") or dt.date.today()
    rules.check_pregnancy(
        mother["sex"],
        mother["birth_date"],
        registered_on,
        body.get("expected_delivery"),
        await family.open_pregnancy(conn, here, mother["id_number"]) is not None,
    )
    pregnancy = {
        **body,
        "pregnancy_id": uuid.uuid4(),
        "registered_in": here,
        "registered_on": registered_on,
    }
    await family.insert_pregnancy(conn, here, pregnancy, here)
    event = await announce(
        conn,
        ctx,
        here,
        event_type="pregnancy.registered.v1",
        id_number=mother["id_number"],
        data=p.PregnancyRegisteredV1(**{k: pregnancy.get(k) for k in p.PregnancyRegisteredV1.model_fields}),
        origin=mother["hukou_division"],
        destination=mother["residence_division"],
        record=("pregnancies", pregnancy["pregnancy_id"]),
    )
    return {**pregnancy, "jurisdiction": here, "closed_on": None, "outcome": None, "event_id": event.id}


async def close_pregnancy(
    conn: asyncpg.Connection, ctx: Context, here: str, pregnancy_id: uuid.UUID, body: dict[str, Any]
) -> dict[str, Any]:
    """Close a pregnancy record (birth, ended, transferred); announce ``pregnancy.closed.v1``."""
    row = await family.get_pregnancy(conn, here, pregnancy_id, lock=True)
    if row is None:
        raise NotFound(
            "no such pregnancy in this jurisdiction's records", field="pregnancy_id", rule="exists"
        )
    closed_on = body.get("closed_on") or dt.date.today()
    rules.check_pregnancy_closure(row["registered_on"], row["closed_on"], closed_on)
    mother = await known_person(conn, here, row["mother_id_number"], "mother_id_number")
    event = await _close(conn, ctx, here, row, mother, closed_on, body["outcome"])
    return {
        "pregnancy_id": pregnancy_id,
        "mother_id_number": row["mother_id_number"],
        "registered_in": row["registered_in"],
        "registered_on": row["registered_on"],
        "expected_delivery": row["expected_delivery"],
        "closed_on": closed_on,
        "outcome": body["outcome"],
        "jurisdiction": here,
        "event_id": event.id,
    }


async def close_open_pregnancy(
    conn: asyncpg.Connection, ctx: Context, here: str, mother: asyncpg.Record, born: dt.date
) -> None:
    """A birth ends the mother's open pregnancy record, if this registry keeps one."""
    row = await family.open_pregnancy(conn, here, mother["id_number"], lock=True)
    if row is not None and row["registered_on"] <= born:
        await _close(conn, ctx, here, row, mother, born, "birth")


async def _close(
    conn: asyncpg.Connection,
    ctx: Context,
    here: str,
    row: asyncpg.Record,
    mother: asyncpg.Record,
    closed_on: dt.date,
    outcome: str,
) -> Any:
    await family.close_pregnancy(conn, here, row["id"], closed_on, outcome)
    return await announce(
        conn,
        ctx,
        here,
        event_type="pregnancy.closed.v1",
        id_number=row["mother_id_number"],
        data=p.PregnancyClosedV1(
            pregnancy_id=row["id"],
            mother_id_number=row["mother_id_number"],
            closed_on=closed_on,
            outcome=outcome,
        ),
        origin=mother["hukou_division"],
        destination=mother["residence_division"],
    )
