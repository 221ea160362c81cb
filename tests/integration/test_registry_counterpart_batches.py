"""The registry's whole-batch notification handler has the outcome of applying each in turn (real PostgreSQL).

The same stream of counterpart notifications (moves of people known here and not yet known, moves
that arrive out of date order, a move sent twice under two notifications, a person registered in
the middle of a run of moves) goes through ``apply_notification`` one at a time into one database
and through ``apply_notifications`` in batches into another; the people, their moves and the
answer queued for each notification must be the same (the batch way sends its plain ``applied``
answers as batches). A notification that cannot be read
makes the batch way raise (the consumer then applies the batch one by one), where the one-by-one
way answers it as rejected.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
from pydantic import ValidationError

from services.registry.service_layer.counterpart import apply_notification, apply_notifications
from services.registry.settings import RegistrySettings
from shared.events import payloads as p
from shared.events.envelope import Envelope
from shared.outbox import batched
from tests.helpers import notification, person_id

ORIGIN, DEST = "320412", "440703"
Notification = Envelope[p.ExchangeNotificationV1]


def _to_here(event_type: str, payload: dict[str, Any]) -> Notification:
    return notification(DEST, event_type, payload, source=ORIGIN)


SETTINGS = RegistrySettings(database_url="postgresql://unused/x", jurisdictions=DEST)


def _stream(rng: random.Random, people: list[str]) -> list[Notification]:
    """Moves back and forth on random dates (so some arrive late), some sent twice, and now and
    then a person registered."""
    sent: list[tuple[str, dict[str, Any]]] = []
    stream = []
    for _ in range(80):
        if sent and rng.random() < 0.15:  # the same move again, under a new notification
            stream.append(_to_here(*rng.choice(sent)))
            continue
        who = rng.choice(people)
        if rng.random() < 0.1:
            stream.append(
                _to_here(
                    "person.registered.v1",
                    {
                        "id_number": who,
                        "name": "登记人",
                        "sex": "F",
                        "birth_date": f"{who[6:10]}-{who[10:12]}-{who[12:14]}",
                        "hukou_division": ORIGIN,
                        "residence_division": rng.choice((ORIGIN, DEST)),
                    },
                )
            )
            continue
        kind = rng.choice(("departed", "arrived", "returned"))
        there, back = (ORIGIN, DEST) if kind != "returned" else (DEST, ORIGIN)
        move = {
            "migration_id": str(uuid.uuid4()),
            "id_number": who,
            "name": "流动人员",
            "hukou_division": ORIGIN,
            "from_division": there,
            "to_division": back,
            "migration_date": str(dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(700))),
        }
        sent.append((f"migration.{kind}.v1", move))
        stream.append(_to_here(f"migration.{kind}.v1", move))
    return stream


async def _known(pool: asyncpg.Pool, who: str, move: uuid.UUID) -> None:
    """Someone on record here before the stream: living in the origin since an early move."""
    await pool.execute(
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date,
                                hukou_division, residence_division, source_division)
           VALUES ($1, $2, md5($2), '已知', 'F', $3, $4, $4, $1)""",
        DEST,
        who,
        dt.date.fromisoformat(f"{who[6:10]}-{who[10:12]}-{who[12:14]}"),
        ORIGIN,
    )
    await pool.execute(
        """INSERT INTO migrations (id, jurisdiction, id_number, kind, from_division, to_division,
                                   migration_date, source_division)
           VALUES ($1, $2, $3, 'returned', $2, $4, '2024-06-01', $2)""",
        move,
        DEST,
        who,
        ORIGIN,
    )


async def _state(pool: asyncpg.Pool) -> dict[str, Any]:
    persons = await pool.fetch(
        """SELECT jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                  residence_division, source_division, source_event_id, event_id
           FROM persons ORDER BY jurisdiction, id_number"""
    )
    moves = await pool.fetch(
        """SELECT id, jurisdiction, id_number, kind, from_division, to_division, migration_date,
                  source_division, source_event_id, event_id
           FROM migrations ORDER BY id"""
    )
    rows = await pool.fetch("SELECT event_type, key, value FROM outbox ORDER BY id")
    return {
        "persons": [dict(r) for r in persons],
        "moves": [dict(r) for r in moves],
        "feedback": _answers(rows),
    }


def _answers(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Every answer queued, a batch's one by one, by notification (a batch has no order with the
    single answers around it: the exchange closes each notification on its first answer)."""
    answers = []
    for r in rows:
        data = orjson.loads(r["value"])["data"]
        if r["event_type"] == "exchange.feedback_batch.v1":
            answers += [{**a, "from_division": data["from_division"]} for a in data["answers"]]
        else:
            answers.append(data)
    return sorted(({k: v for k, v in a.items() if k != "applied_at"} for a in answers), key=orjson.dumps)


def _batches(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [orjson.loads(r["value"])["data"] for r in rows if r["event_type"] == "exchange.feedback_batch.v1"]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batches_of_notifications_apply_as_one_by_one(
    registry_pools: tuple[asyncpg.Pool, asyncpg.Pool], seed: int
) -> None:
    rng = random.Random(seed)
    people = [person_id("F") for _ in range(8)]
    one_by_one, in_batches = registry_pools
    earlier = [uuid.uuid4() for _ in range(3)]
    for pool in registry_pools:
        for who, move in zip(people, earlier, strict=False):
            await _known(pool, who, move)
    stream = _stream(rng, people)
    at = 0
    while at < len(stream):
        batch = stream[at : at + rng.randint(1, 20)]
        at += len(batch)
        for pool, whole in ((one_by_one, False), (in_batches, True)):
            async with pool.acquire() as conn, conn.transaction(), batched(conn):
                if whole:
                    await apply_notifications(conn, SETTINGS, batch)
                else:
                    for n in batch:
                        await apply_notification(conn, SETTINGS, n)
    expected, got = await _state(one_by_one), await _state(in_batches)
    assert got == expected
    # a feedback for every notification, every move applied, everyone named on record now
    assert len(expected["feedback"]) == len(stream)
    moves = {str(n.data.notification_id) for n in stream if n.data.event_type.startswith("migration.")}
    assert {f["notification_id"] for f in expected["feedback"] if f["outcome"] == "applied"} >= moves
    # the batch way answered its plain ``applied`` answers in batches, the one-by-one way never
    batched_answers = _batches(await in_batches.fetch("SELECT event_type, key, value FROM outbox"))
    assert batched_answers and all(len(b["answers"]) >= 2 for b in batched_answers)
    assert all(
        a["outcome"] == "applied" and a["conflicts"] == [] for b in batched_answers for a in b["answers"]
    )
    assert _batches(await one_by_one.fetch("SELECT event_type, key, value FROM outbox")) == []
    # a batch is keyed by its own id, a single answer by its notification's (the person's) key
    subjects = {str(n.data.notification_id): n.subject for n in stream}
    for r in await in_batches.fetch("SELECT event_type, key, value FROM outbox"):
        data = orjson.loads(r["value"])["data"]
        if r["event_type"] == "exchange.feedback_batch.v1":
            assert r["key"] == uuid.UUID(data["batch_id"]).hex
        else:
            assert r["key"] == subjects[data["notification_id"]]
    named = {n.data.payload["id_number"] for n in stream}
    assert {r["id_number"] for r in expected["persons"]} == named | set(people[:3])


async def test_an_unreadable_notification_fails_the_batch_and_is_refused_alone(
    registry_pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    pool = registry_pools[0]
    who = person_id("M")
    good = _to_here(
        "migration.departed.v1",
        {
            "migration_id": str(uuid.uuid4()),
            "id_number": who,
            "name": "流动人员",
            "hukou_division": ORIGIN,
            "from_division": ORIGIN,
            "to_division": DEST,
            "migration_date": "2025-02-01",
        },
    )
    bad = _to_here("migration.departed.v1", {"id_number": who, "name": "无日期"})
    async with pool.acquire() as conn:
        with pytest.raises(ValidationError):
            async with conn.transaction(), batched(conn):
                await apply_notifications(conn, SETTINGS, [good, bad])
        assert await conn.fetchval("SELECT count(*) FROM migrations") == 0  # rolled back whole
        async with conn.transaction(), batched(conn):
            for n in (good, bad):
                await apply_notification(conn, SETTINGS, n)
    outcomes = {f["notification_id"]: (f["outcome"], f["reason"]) for f in (await _state(pool))["feedback"]}
    assert outcomes[str(good.data.notification_id)] == ("applied", None)
    assert outcomes[str(bad.data.notification_id)] == (
        "rejected",
        "cannot apply migration.departed.v1: ValidationError",
    )
    assert await pool.fetchval("SELECT residence_division FROM persons WHERE id_number = $1", who) == DEST
