"""Persons: registering one, finding the persons other use cases refer to, and a counterpart's
person applied to our records."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.registry.adapters import migrations as moves
from services.registry.adapters import persons as repo
from services.registry.adapters.records import Made
from services.registry.domain.conflicts import field_conflicts
from services.registry.domain.migrations import moved_to
from services.registry.domain.persons import (
    PersonRecorded,
    RegisterPerson,
    check_person,
    is_ours,
    sex_from_id_number,
)
from services.registry.domain.rules import duplicate
from services.registry.service_layer.context import (
    Context,
    Outcome,
    Target,
    announce_about,
    applied,
    disagreeing,
)
from shared.errors import RuleViolation
from shared.events import payloads as p
from shared.events.envelope import new_event_id
from shared.identity import birth_date_of


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
    conn: asyncpg.Connection, ctx: Context, here: str, body: RegisterPerson
) -> PersonRecorded:
    """Record a person in the jurisdiction's register and announce ``person.registered.v1``.

    A person of elsewhere (neither registered nor living here: a spouse or a father from another
    division, recorded for a marriage or a birth registered here) is recorded and not announced:
    only her own registries speak for her (``shared.events.signature.PLACES_OF_RECORD``), and the
    marriage or birth reaches them under her key.
    """
    check_person(body.id_number, body.sex, body.birth_date)
    person = {**body.model_dump(), "residence_division": body.residence_division or body.hukou_division}
    ours = is_ours(here, person["hukou_division"], person["residence_division"])
    subject = ctx.subject(person["id_number"])
    event_id = new_event_id() if ours else None
    if not await repo.insert_person(conn, here, person, subject, Made(here, event_id=event_id)):
        raise duplicate("a person with this identity number", "id_number")
    if not ours:
        return PersonRecorded.model_validate(
            {**person, "jurisdiction": here, "source_division": here, "event_id": None}
        )
    event = await announce_about(
        conn, ctx, here, person, "person.registered.v1", p.PersonRegisteredV1(**person), event_id
    )
    return PersonRecorded.model_validate(
        {**person, "jurisdiction": here, "source_division": here, "event_id": event.id}
    )


_SAME_PERSON = ("name", "sex", "birth_date", "hukou_division")


async def apply_person(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    """A counterpart's person: kept if new here, else compared with ours, as a move or a marriage
    held here is, and ours kept. Her residence is compared too unless moves of hers are on record
    here: then they say where she lives (``residence-follows-last-move``), and a registration sent
    again after them is not held against them."""
    # Sex and birth date may be withheld by an agreement: the identity number carries both.
    d = {
        **d,
        "sex": d["sex"] or sex_from_id_number(d["id_number"]),
        "birth_date": d["birth_date"] or birth_date_of(d["id_number"]),
    }
    existing = await repo.get_person(conn, t.here, d["id_number"])
    if existing is None:
        await repo.insert_person(conn, t.here, d, t.subject(d["id_number"]), t.made)
        return applied()
    fields: tuple[str, ...] = _SAME_PERSON
    other_residence = existing["residence_division"] != d["residence_division"]  # else no moves read
    if other_residence and moved_to(await moves.residence(conn, t.here, d["id_number"])) is None:
        fields = (*fields, "residence_division")
    conflicts = field_conflicts(dict(existing), d, fields)
    return disagreeing(conflicts, "the person is recorded here with other details")
