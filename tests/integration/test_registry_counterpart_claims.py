"""A counterpart's notifications that claim more than they may: a copy of our own record sent
back that our own log does not say, and a record re-sent under a key already held here with other
details. Each is answered ``conflict`` and changes nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from services.registry.domain.migrations import RecordMigration
from services.registry.domain.persons import RegisterPerson
from services.registry.domain.pregnancies import ClosePregnancy, RegisterPregnancy
from services.registry.service_layer.context import Context
from services.registry.service_layer.counterpart import apply_notification
from services.registry.service_layer.migrations import record_migration
from services.registry.service_layer.persons import register_person
from services.registry.service_layer.pregnancies import close_pregnancy, register_pregnancy
from services.registry.settings import RegistrySettings
from shared.db import init_connection, migrate
from shared.identity import birth_date_of
from tests.helpers import notification, person_id

HERE, THERE = "320412", "440703"


@pytest.fixture
async def conn(fresh_db: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(fresh_db, "registry", Path("services/registry/migrations"))
    c = await asyncpg.connect(fresh_db)
    await init_connection(c)
    try:
        yield c
    finally:
        await c.close()


def _settings(dsn: str) -> RegistrySettings:
    return RegistrySettings(database_url=dsn, jurisdictions=HERE)


async def _feedback(conn: asyncpg.Connection) -> dict[str, Any]:
    value = await conn.fetchval(
        "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id DESC LIMIT 1"
    )
    data: dict[str, Any] = orjson.loads(value)["data"]
    return data


async def _notify(
    conn: asyncpg.Connection, dsn: str, event_type: str, payload: dict[str, Any]
) -> dict[str, Any]:
    async with conn.transaction():
        await apply_notification(conn, _settings(dsn), notification(HERE, event_type, payload, source=THERE))
    return await _feedback(conn)


async def _our_resident(conn: asyncpg.Connection, dsn: str, sex: str = "F") -> str:
    number = person_id(sex)
    body = RegisterPerson(
        id_number=number, name="林月", sex=sex, birth_date=birth_date_of(number), hukou_division=HERE
    )
    async with conn.transaction():
        await register_person(conn, Context(_settings(dsn)), HERE, body)
    return number


async def test_a_move_of_ours_sent_back_as_another_kind_of_move_is_not_taken_as_ours(
    conn: asyncpg.Connection, fresh_db: str
) -> None:
    """Our departure, lost here, comes back from the counterpart as an arrival naming our
    departure's event: every field the departure carries agrees, but our log says she departed."""
    number = await _our_resident(conn, fresh_db)
    move = RecordMigration(
        kind="departed",
        id_number=number,
        from_division=HERE,
        to_division=THERE,
        migration_date=dt.date(2025, 2, 1),
    )
    async with conn.transaction():
        recorded = await record_migration(conn, Context(_settings(fresh_db)), HERE, move)
    await conn.execute("DELETE FROM migrations WHERE id = $1", recorded.migration_id)  # lost here
    whole = {
        "migration_id": str(recorded.migration_id),
        "id_number": number,
        "kind": "arrived",
        "from_division": HERE,
        "to_division": THERE,
        "migration_date": "2025-02-01",
    }
    repair = {
        "correction_id": str(uuid.uuid4()),
        "corrected_event_id": str(recorded.event_id),
        "record_type": "migration",
        "record_id": str(recorded.migration_id),
        "changes": whole,
        "reason": "repair of reconciliation case 1",
    }
    feedback = await _notify(conn, fresh_db, "record.corrected.v1", repair)
    assert feedback["outcome"] == "conflict", feedback
    assert await conn.fetchval("SELECT count(*) FROM migrations") == 0
    # The copy as our log says it is taken back, as our own.
    honest = {**repair, "correction_id": str(uuid.uuid4()), "changes": {**whole, "kind": "departed"}}
    assert (await _notify(conn, fresh_db, "record.corrected.v1", honest))["outcome"] == "applied"
    row = await conn.fetchrow("SELECT kind, source_division FROM migrations")
    assert tuple(row) == ("departed", HERE)


async def test_a_pregnancy_of_ours_sent_back_naming_its_closure_is_not_taken_as_ours(
    conn: asyncpg.Connection, fresh_db: str
) -> None:
    """Our pregnancy record, lost here, comes back naming our closure of it, which says nothing of
    where and when it was registered: the copy's are not taken for our own."""
    mother = await _our_resident(conn, fresh_db)
    ctx = Context(_settings(fresh_db))
    async with conn.transaction():
        made = await register_pregnancy(
            conn, ctx, HERE, RegisterPregnancy(mother_id_number=mother, registered_on=dt.date(2025, 3, 1))
        )
        closed = await close_pregnancy(
            conn, ctx, HERE, made.pregnancy_id, ClosePregnancy(outcome="ended", closed_on=dt.date(2025, 4, 1))
        )
    await conn.execute("DELETE FROM pregnancies WHERE id = $1", made.pregnancy_id)  # lost here
    whole = {
        "pregnancy_id": str(made.pregnancy_id),
        "mother_id_number": mother,
        "registered_in": THERE,
        "registered_on": "2024-12-01",
        "closed_on": "2025-04-01",
        "outcome": "ended",
    }
    feedback = await _notify(
        conn,
        fresh_db,
        "record.corrected.v1",
        {
            "correction_id": str(uuid.uuid4()),
            "corrected_event_id": str(closed.event_id),
            "record_type": "pregnancy",
            "record_id": str(made.pregnancy_id),
            "changes": whole,
            "reason": "repair of reconciliation case 2",
        },
    )
    assert feedback["outcome"] == "conflict", feedback
    assert await conn.fetchval("SELECT count(*) FROM pregnancies") == 0


async def _sent_twice(
    conn: asyncpg.Connection, dsn: str, event_type: str, first: dict[str, Any], again: dict[str, Any]
) -> tuple[str, str, str]:
    """The outcomes of a counterpart's record, of the same one sent again, and of another record
    sent under its key."""
    return (
        (await _notify(conn, dsn, event_type, first))["outcome"],
        (await _notify(conn, dsn, event_type, first))["outcome"],
        (await _notify(conn, dsn, event_type, again))["outcome"],
    )


async def test_a_pregnancy_sent_again_otherwise_under_a_held_key_is_a_conflict(
    conn: asyncpg.Connection, fresh_db: str
) -> None:
    mother = await _our_resident(conn, fresh_db)
    first = {
        "pregnancy_id": str(uuid.uuid4()),
        "mother_id_number": mother,
        "registered_in": THERE,
        "registered_on": "2025-03-01",
        "expected_delivery": "2025-10-01",
    }
    again = {**first, "registered_on": "2025-01-05", "expected_delivery": "2025-08-01"}
    outcomes = await _sent_twice(conn, fresh_db, "pregnancy.registered.v1", first, again)
    assert outcomes == ("applied", "applied", "conflict")
    row = await conn.fetchrow("SELECT registered_on, expected_delivery FROM pregnancies")
    assert tuple(row) == (dt.date(2025, 3, 1), dt.date(2025, 10, 1))


async def test_a_birth_sent_again_otherwise_under_a_held_key_is_a_conflict(
    conn: asyncpg.Connection, fresh_db: str
) -> None:
    """The same birth id with another certificate, mother and child: nothing of it is kept here,
    so the answer cannot be ``applied``."""
    first_mother, other_mother = await _our_resident(conn, fresh_db), await _our_resident(conn, fresh_db)
    first = {
        "birth_id": str(uuid.uuid4()),
        "medical_certificate_number": "P100000001",
        "child_name": "陈小青",
        "child_sex": "F",
        "child_birth_date": "2025-06-01",
        "mother_id_number": first_mother,
        "birth_order": 1,
        "birth_place": {"division": THERE},
    }
    again = {
        **first,
        "medical_certificate_number": "P100000002",
        "child_name": "陈小红",
        "mother_id_number": other_mother,
    }
    outcomes = await _sent_twice(conn, fresh_db, "birth.registered.v2", first, again)
    assert outcomes == ("applied", "applied", "conflict")
    assert [
        tuple(r) for r in await conn.fetch("SELECT medical_certificate_number, mother_id_number FROM births")
    ] == [("P100000001", first_mother)]


async def test_a_move_sent_again_otherwise_under_a_held_key_is_a_conflict(
    conn: asyncpg.Connection, fresh_db: str
) -> None:
    number = person_id("M")
    first = {
        "migration_id": str(uuid.uuid4()),
        "id_number": number,
        "name": "王强",
        "hukou_division": HERE,
        "from_division": HERE,
        "to_division": THERE,
        "migration_date": "2025-02-01",
    }
    again = {**first, "from_division": "110101", "migration_date": "2025-02-20"}
    outcomes = await _sent_twice(conn, fresh_db, "migration.arrived.v1", first, again)
    assert outcomes == ("applied", "applied", "conflict")
    row = await conn.fetchrow("SELECT from_division, migration_date FROM migrations")
    assert tuple(row) == (HERE, dt.date(2025, 2, 1))


async def test_a_correction_sent_again_after_a_later_one_changes_nothing(
    conn: asyncpg.Connection, fresh_db: str
) -> None:
    """The exchange re-sends a notification it has no answer to yet (under a new event id): a
    correction applied here already, sent again after the source corrected the record once more,
    must not bring the older value back."""
    number = person_id("F")
    person = {
        "id_number": number,
        "name": "赵兰",
        "sex": "F",
        "birth_date": birth_date_of(number).isoformat(),
        "hukou_division": THERE,
        "residence_division": THERE,
    }
    assert (await _notify(conn, fresh_db, "person.registered.v1", person))["outcome"] == "applied"

    def correction(name: str) -> dict[str, Any]:
        return {
            "correction_id": str(uuid.uuid4()),
            "corrected_event_id": str(uuid.uuid4()),
            "record_type": "person",
            "record_id": number,
            "changes": {"name": name},
            "reason": "misspelt at the counter",
        }

    first, second = correction("赵岚"), correction("赵澜")
    for sent in (first, second, first):
        assert (await _notify(conn, fresh_db, "record.corrected.v1", sent))["outcome"] == "applied"
    assert await conn.fetchval("SELECT name FROM persons WHERE id_number = $1", number) == "赵澜"
