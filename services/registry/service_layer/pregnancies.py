"""Pregnancy records (sensitive): registered for maternal care, closed when the pregnancy ends; and
a counterpart's applied to our records (kept only by the mother's origin and destination)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.adapters import persons
from services.registry.adapters import pregnancies as repo
from services.registry.adapters.records import Made
from services.registry.domain import access
from services.registry.domain.conflicts import field_conflicts
from services.registry.domain.pregnancies import (
    ClosePregnancy,
    PregnancyRecorded,
    RegisterPregnancy,
    check_pregnancy,
    check_pregnancy_closure,
    check_registered_by_hers,
)
from services.registry.service_layer.context import (
    Context,
    Outcome,
    Target,
    announce_about,
    applied,
    apply_end,
    disagreeing,
    rejected,
)
from services.registry.service_layer.persons import known_person
from shared.errors import Conflict, NotFound
from shared.events import payloads as p
from shared.events.envelope import new_event_id


async def register_pregnancy(
    conn: asyncpg.Connection, ctx: Context, here: str, body: RegisterPregnancy
) -> PregnancyRecorded:
    """Record a pregnancy of a woman on record; announce ``pregnancy.registered.v1``.

    Only the mother's origin and destination registries receive it (the exchange routes by those);
    the record keeps which they were (``shared_with``): they alone of the counterparts read it here.
    """
    mother = await known_person(conn, here, body.mother_id_number, "mother_id_number")
    await persons.lock_person(conn, here, mother["id_number"])
    check_registered_by_hers(here, mother["hukou_division"], mother["residence_division"])
    registered_on = body.registered_on or dt.date.today()
    check_pregnancy(
        mother["sex"],
        mother["birth_date"],
        registered_on,
        body.expected_delivery,
        await repo.open_pregnancy(conn, here, mother["id_number"]) is not None,
    )
    pregnancy = {
        **body.model_dump(),
        "pregnancy_id": uuid.uuid4(),
        "registered_in": here,
        "registered_on": registered_on,
        "shared_with": access.told_of_registration(
            here, mother["hukou_division"], mother["residence_division"]
        ),
    }
    event_id = new_event_id()
    if not await repo.insert_pregnancy(conn, here, pregnancy, Made(here, event_id=event_id)):
        # a counterpart's open pregnancy of hers came in meanwhile (pregnancies_one_open)
        raise Conflict(
            "the mother has an open pregnancy record: close it first",
            field="mother_id_number",
            rule="one-open-pregnancy",
        )
    event = await announce_about(
        conn,
        ctx,
        here,
        mother,
        "pregnancy.registered.v1",
        p.PregnancyRegisteredV1(**{k: pregnancy.get(k) for k in p.PregnancyRegisteredV1.model_fields}),
        event_id,
    )
    return PregnancyRecorded.model_validate(
        {**pregnancy, "jurisdiction": here, "closed_on": None, "outcome": None, "event_id": event.id}
    )


async def close_pregnancy(
    conn: asyncpg.Connection, ctx: Context, here: str, pregnancy_id: uuid.UUID, body: ClosePregnancy
) -> PregnancyRecorded:
    """Close a pregnancy record (birth, ended, transferred); announce ``pregnancy.closed.v1``."""
    row = await repo.get_pregnancy(conn, here, pregnancy_id, lock=True)
    if row is None:
        raise NotFound(
            "no such pregnancy in this jurisdiction's records", field="pregnancy_id", rule="exists"
        )
    closed_on = body.closed_on or dt.date.today()
    check_pregnancy_closure(row["registered_on"], row["closed_on"], closed_on)
    mother = await known_person(conn, here, row["mother_id_number"], "mother_id_number")
    event = await _close(conn, ctx, here, row, mother, closed_on, body.outcome)
    return PregnancyRecorded.model_validate(
        {
            "pregnancy_id": pregnancy_id,
            "mother_id_number": row["mother_id_number"],
            "registered_in": row["registered_in"],
            "registered_on": row["registered_on"],
            "expected_delivery": row["expected_delivery"],
            "closed_on": closed_on,
            "outcome": body.outcome,
            "jurisdiction": here,
            "event_id": event.id,
        }
    )


async def close_open_pregnancy(
    conn: asyncpg.Connection, ctx: Context, here: str, mother: asyncpg.Record, born: dt.date
) -> None:
    """A birth ends the mother's open pregnancy record, if this registry keeps one."""
    row = await repo.open_pregnancy(conn, here, mother["id_number"], lock=True)
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
    await repo.close_pregnancy(conn, here, row["id"], closed_on, outcome, here)
    return await announce_about(
        conn,
        ctx,
        here,
        mother,
        "pregnancy.closed.v1",
        p.PregnancyClosedV1(
            pregnancy_id=row["id"],
            mother_id_number=row["mother_id_number"],
            closed_on=closed_on,
            outcome=outcome,
        ),
    )


async def apply_pregnancy(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    """Kept only if we are the mother's origin or destination (DESIGN.md section 8)."""
    here = t.here
    mother = await persons.get_person(conn, here, d["mother_id_number"])
    if mother is None or here not in (mother["hukou_division"], mother["residence_division"]):
        return rejected("pregnancy records are kept only by the mother's origin and destination")
    same = await repo.get_pregnancy(conn, here, d["pregnancy_id"])
    if same is not None:
        fields = ("mother_id_number", "registered_in", "registered_on")
        shown = (
            fields if d.get("expected_delivery") is None else (*fields, "expected_delivery")
        )  # withholdable
        return disagreeing(field_conflicts(dict(same), d, shown), "this pregnancy is recorded here otherwise")
    open_one = await repo.open_pregnancy(conn, here, d["mother_id_number"])
    if open_one is not None:
        conflicts = [{"field": "pregnancy_id", "ours": str(open_one["id"]), "theirs": str(d["pregnancy_id"])}]
        return "conflict", conflicts, "another open pregnancy is recorded here for this mother"
    await repo.insert_pregnancy(conn, here, d, t.made)
    return applied()


async def apply_pregnancy_closed(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    row = await repo.get_pregnancy(conn, t.here, d["pregnancy_id"], lock=True)

    async def close() -> None:
        await repo.close_pregnancy(conn, t.here, d["pregnancy_id"], d["closed_on"], d["outcome"], t.source)

    return await apply_end(row, d, ("closed_on", "outcome"), ("pregnancy", "was closed"), close)
