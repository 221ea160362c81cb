"""A batch's run of moves recorded together answers and writes as the moves recorded one by one (real PostgreSQL).

The same random batches of moves (people known here and not, departures of people who live
elsewhere, arrivals without a departure, moves out of date order, first records without a name,
several moves of one person in one batch) go through ``record_each`` once with each item's
single use case and once with ``migrations.record_migrations`` for runs of them, each into a
database of its own; every item's answer (the record, or the rule that refused it), the people,
their moves and the events in the outbox must be the same. A run that meets a person whom a
notification recorded meanwhile is recorded one move at a time.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import asyncpg
import orjson
import pytest

from services.registry.domain.migrations import RecordMigration
from services.registry.service_layer import migrations
from services.registry.service_layer.batches import NotTogether, Outcome, Prepared, record_each
from services.registry.service_layer.context import Context
from services.registry.settings import RegistrySettings
from tests.helpers import person_id

HERE, ORIGIN, THIRD = "440703", "320412", "110101"
CTX = Context(RegistrySettings(database_url="postgresql://unused/x", jurisdictions=HERE))


def _prepared(command: RecordMigration, together: bool) -> Prepared:
    async def one(conn: asyncpg.Connection) -> Any:
        return await migrations.record_migration(conn, CTX, HERE, command)

    async def many(conn: asyncpg.Connection, commands: list[Any], traces: list[str | None]) -> Any:
        return await migrations.record_migrations(conn, CTX, HERE, commands, traces)

    return Prepared(one, "migration", command, many if together else None)


def _move(rng: random.Random, people: list[str]) -> RecordMigration:
    kind = rng.choice(("departed", "arrived", "arrived", "returned"))
    frm, to = {
        "departed": (HERE, rng.choice((ORIGIN, THIRD))),
        "arrived": (rng.choice((ORIGIN, THIRD)), HERE),
        "returned": (ORIGIN, HERE),
    }[kind]
    if rng.random() < 0.1:  # recorded at the wrong end
        frm, to = to, frm
    named = rng.random() < 0.8
    return RecordMigration.model_validate(
        {
            "kind": kind,
            "id_number": rng.choice(people),
            "from_division": frm,
            "to_division": to,
            "migration_date": str(dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(600))),
            "name": "流动人员" if named else None,
            "hukou_division": rng.choice((HERE, ORIGIN)) if named else None,
        }
    )


async def _known(pool: asyncpg.Pool, who: str, lives: str) -> None:
    await pool.execute(
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date,
                                hukou_division, residence_division, source_division)
           VALUES ($1, $2, md5($2), '已知', 'F', $3, $4, $5, $1)""",
        HERE,
        who,
        dt.date.fromisoformat(f"{who[6:10]}-{who[10:12]}-{who[12:14]}"),
        ORIGIN,
        lives,
    )


def _answer(o: Outcome) -> Any:
    if o.error is not None:
        return ("refused", o.error.rule, o.error.status)
    assert o.result is not None
    return {k: v for k, v in o.result.model_dump().items() if k not in ("migration_id", "event_id")}


async def _state(pool: asyncpg.Pool) -> dict[str, Any]:
    persons = await pool.fetch(
        """SELECT id_number, subject, name, sex, birth_date, hukou_division, residence_division,
                  source_division, event_id IS NOT NULL AS made_by_event
           FROM persons ORDER BY id_number"""
    )
    moves = await pool.fetch(
        """SELECT m.id_number, m.kind, m.from_division, m.to_division, m.migration_date,
                  m.source_division, o.event_type
           FROM migrations m JOIN outbox o ON o.event_id = m.event_id
           ORDER BY m.id_number, m.migration_date, m.kind, m.from_division"""
    )
    events = []
    for r in await pool.fetch("SELECT key, event_type, value FROM outbox ORDER BY id"):
        event = orjson.loads(r["value"])
        data = {k: v for k, v in event["data"].items() if k != "migration_id"}
        events.append((r["key"], r["event_type"], event["sequence"], event.get("destination"), data))
    return {"persons": [dict(r) for r in persons], "moves": [dict(r) for r in moves], "events": events}


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
async def test_moves_recorded_together_as_one_by_one(
    registry_pools: tuple[asyncpg.Pool, asyncpg.Pool], seed: int
) -> None:
    rng = random.Random(seed)
    people = [person_id(rng.choice("FM")) for _ in range(7)]
    for pool in registry_pools:
        await _known(pool, people[0], HERE)
        await _known(pool, people[1], ORIGIN)
    answers: dict[bool, list[Any]] = {False: [], True: []}
    for _ in range(6):
        batch = [_move(rng, people) for _ in range(rng.randint(1, 25))]
        for pool, together in zip(registry_pools, (False, True), strict=True):
            async with pool.acquire() as conn:
                outcomes = await record_each(conn, [_prepared(c, together) for c in batch])
            answers[together] += [_answer(o) for o in outcomes]
    assert answers[True] == answers[False]
    assert await _state(registry_pools[1]) == await _state(registry_pools[0])
    # the batches held both: moves recorded and moves refused by the rules of a history
    recorded = [a for a in answers[False] if isinstance(a, dict)]
    refused = {a[1] for a in answers[False] if isinstance(a, tuple)}
    assert recorded and {"person-must-exist", "moves-in-date-order"} & refused


async def test_a_person_recorded_meanwhile_stops_the_run_from_being_written_together(
    registry_pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    pool = registry_pools[0]
    she = person_id("F")
    arrival = RecordMigration.model_validate(
        {
            "kind": "arrived",
            "id_number": she,
            "from_division": ORIGIN,
            "to_division": HERE,
            "migration_date": "2025-01-10",
            "name": "新来",
            "hukou_division": ORIGIN,
        }
    )
    async with pool.acquire() as conn, conn.transaction():
        assert await migrations.repo.residences(conn, [(HERE, she)]) == {}  # not on record when read
        await _known(pool, she, ORIGIN)  # a notification about her, applied meanwhile
        move = {**arrival.model_dump(), "migration_id": uuid.uuid4(), "hukou_division": ORIGIN}
        with pytest.raises(NotTogether):
            await migrations._write_moves(conn, CTX, HERE, [(0, arrival, move, True)], [None])
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    async with pool.acquire() as conn:  # recorded one at a time, it is judged against her record
        outcomes = await record_each(conn, [_prepared(arrival, True)])
    assert outcomes[0].error is None
    assert await pool.fetchval("SELECT residence_division FROM persons WHERE id_number = $1", she) == HERE
