"""The routing consumer's whole-batch handler has the outcome of its event-by-event handler (real PostgreSQL).

The same stream of registry events (people registered, moves back and forth, marriages whose
spouses live elsewhere, births with a father, late arrivals, a gap) and then the counterparts'
answers (first and repeated, applied and refused) goes through ``messagebus.in_order`` one event
at a time into one database and through ``messagebus.in_batches`` in batches into another; the
roster, the ordering rows, the parked events, the notifications and what the outbox holds must be
the same. A batch that holds what the batch way does not fold (a gap, a pregnancy) must also come
out the same: it goes event by event.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from services.migrant_exchange.service_layer import batches, messagebus
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import unit_of_work
from shared.events.envelope import Envelope
from shared.events.signature import Rejected
from shared.identity import subject_key
from shared.outbox import batched
from tests.exchange.exchange_helpers import SECRET, A, B, C, event, new_person, person_event
from tests.helpers import two_databases

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "migrant_exchange" / "migrations"
SETTINGS = ExchangeSettings(subject_key_secret=SECRET.decode())
D = "510104"


@pytest.fixture
async def pools(pg: Any) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two exchange databases with the same agreements."""
    async with two_databases(pg, "migrant_exchange", MIGRATIONS) as made:
        for pool in made:
            await pool.execute(
                "INSERT INTO agreements VALUES ($1, $2, $3, 3600, $4), ($5, $6, $7, 3600, '{}'), ('*', '*', $8, 3600, '{}')",
                *sorted((A, B)),
                ["*"],
                {
                    B: {
                        "marriage.registered.v1": [
                            "marriage_id",
                            "spouse_a_id_number",
                            "spouse_b_id_number",
                            "marriage_date",
                            "registered_in",
                        ]
                    }
                },
                *sorted((A, C)),
                ["migration.departed.v1", "migration.arrived.v1", "person.registered.v1"],
                ["birth.registered.v2"],
            )
        yield made


class Stream:
    """Registry events of a few people, numbered per subject and producer as a registry would."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.seq: dict[tuple[str, str], int] = {}
        self.events: list[Envelope[Any]] = []

    def add(self, event_type: str, producer: str, data: dict[str, Any], id_number: str, **ext: Any) -> None:
        subject = subject_key(id_number, SECRET)
        n = self.seq[(subject, producer)] = self.seq.get((subject, producer), 0) + 1
        self.events.append(event(event_type, producer, data, subject, n, **ext))

    def person(self, id_number: str, producer: str, hukou: str, residence: str) -> None:
        e = person_event(id_number, producer, hukou, residence)
        subject = e.subject
        n = self.seq[(subject, producer)] = self.seq.get((subject, producer), 0) + 1
        self.events.append(e.model_copy(update={"sequence": n}))

    def move(self, id_number: str, producer: str, hukou: str, src: str, dst: str) -> None:
        kind = self.rng.choice(["migration.departed.v1", "migration.arrived.v1"])
        data = {
            "migration_id": str(uuid.uuid4()),
            "id_number": id_number,
            "name": "测试",
            "hukou_division": hukou,
            "from_division": src,
            "to_division": dst,
            "migration_date": "2025-03-01",
        }
        self.add(kind, producer, data, id_number, origin=hukou, destination=dst)


def _stream(seed: int) -> Stream:
    s = Stream(seed)
    people = [new_person() for _ in range(12)]
    fathers = [new_person(sex="M") for _ in range(3)]
    where = {}
    for p in people + fathers:
        hukou = s.rng.choice([A, B, C])
        s.person(p, A, hukou, s.rng.choice([A, B, C]))
        where[p] = hukou
    for _ in range(40):
        p = s.rng.choice(people + fathers)
        roll = s.rng.random()
        if roll < 0.5:
            src, dst = s.rng.sample([A, B, C, D], 2)
            s.move(p, s.rng.choice([A, B]), where[p], src, dst)
        elif roll < 0.7:
            other = s.rng.choice(fathers)
            data = {
                "marriage_id": str(uuid.uuid4()),
                "spouse_a_id_number": other,
                "spouse_a_name": "甲",
                "spouse_b_id_number": p,
                "spouse_b_name": "乙",
                "marriage_date": "2024-05-20",
                "registered_in": s.rng.choice([A, C]),
            }
            s.add("marriage.registered.v1", A, data, p)
        else:
            data = {
                "birth_id": str(uuid.uuid4()),
                "medical_certificate_number": "M" + str(s.rng.randrange(10**8, 10**9)),
                "child_name": "丙",
                "child_sex": "M",
                "child_birth_date": "2025-01-02",
                "mother_id_number": p,
                "father_id_number": s.rng.choice([*fathers, None]),
                "birth_order": 1,
                "birth_place": {"division": A, "kind": "hospital"},
            }
            s.add("birth.registered.v2", A, data, p, origin=where[p])
    return s


def _answers(notes: list[asyncpg.Record], seq: dict[tuple[str, str], int], seed: int) -> list[Envelope[Any]]:
    """Feedback for most notifications, some twice with another outcome, numbered after the
    answering registry's events; by (event, target), so the two databases (whose notification ids
    differ) get the same answers with the same ids."""
    rng, seq, out = random.Random(seed), dict(seq), []
    for i, n in enumerate(notes):
        if i % 5 == 4:
            continue  # unanswered
        for outcome in ["applied"] if i % 7 else ["conflict", "applied"]:
            data = {
                "notification_id": str(n["id"]),
                "from_division": n["target_division"],
                "outcome": outcome,
                "conflicts": [{"field": "name", "ours": "甲", "theirs": "乙"}]
                if outcome == "conflict"
                else [],
                "reason": None if outcome == "applied" else "names differ",
                "applied_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            number = seq[(n["subject"], n["target_division"])] = (
                seq.get((n["subject"], n["target_division"]), 0) + 1
            )
            answer = event("exchange.feedback.v1", n["target_division"], data, n["subject"], number)
            out.append(answer.model_copy(update={"id": uuid.UUID(int=rng.getrandbits(128), version=4)}))
    return out


async def _one_by_one(pool: asyncpg.Pool, events: list[Envelope[Any]]) -> None:
    handle = messagebus.in_order(SETTINGS)
    async with unit_of_work(pool) as conn, batched(conn):
        for e in events:
            await handle(conn, e)


async def _in_batches(pool: asyncpg.Pool, events: list[Envelope[Any]], sizes: list[int]) -> None:
    handle = messagebus.in_batches(SETTINGS)
    start = 0
    for size in sizes:
        async with unit_of_work(pool) as conn, batched(conn):
            await handle(conn, events[start : start + size])
        start += size
    assert start >= len(events)


async def _state(pool: asyncpg.Pool) -> dict[str, Any]:
    """Everything the routing writes, without what is random or a clock's (ids, times)."""
    async with pool.acquire() as conn:
        roster = await conn.fetch(
            "SELECT subject, hukou_division, residence_division, residence_as_of, moves, last_event_at FROM roster ORDER BY 1"
        )
        progress = await conn.fetch(
            "SELECT subject, source, last_sequence, parked FROM sequence_progress ORDER BY 1, 2"
        )
        parked = await conn.fetch(
            "SELECT subject, source, sequence, event_id FROM parked_events ORDER BY 1, 2, 3"
        )
        notes = await conn.fetch(
            """SELECT target_division, source_division, subject, event_id, event_type, event_sequence, payload,
                      withheld_fields, state, conflicts, reason, attempts FROM notifications ORDER BY event_id, target_division"""
        )
        outbox = await conn.fetch("SELECT event_type, topic, key, value FROM outbox ORDER BY id")
        holders = await conn.fetch(
            "SELECT record_type, record_id, division FROM record_holders ORDER BY 1, 2, 3"
        )
    published, disclosed = [], []
    for row in outbox:
        value = orjson.loads(row["value"])
        if row["event_type"] == "disclosure.batch.v1":
            # one batch per unit of work and set of registries: compared by what each entry discloses
            batch = value["data"]
            disclosed += [
                (batch["record_at"], batch["discloser"], _without_random(entry)) for entry in batch["entries"]
            ]
            continue
        data = _without_random(value["data"])
        published.append(
            (row["event_type"], row["topic"], row["key"], value["subject"], value["sequence"], data)
        )
    return {
        "roster": [dict(r) for r in roster],
        "progress": [dict(r) for r in progress],
        "parked": [dict(r) for r in parked],
        "notifications": [dict(r) for r in notes],
        "holders": [tuple(r) for r in holders],
        # per key in order (what Kafka keeps in order), not across keys
        "outbox": sorted(published, key=lambda r: (r[1], r[2], r[3], r[4])),
        # batch events go to partitions by their own ids: no order between them to compare
        "disclosed": sorted(disclosed, key=orjson.dumps),
    }


def _without_random(data: dict[str, Any]) -> dict[str, Any]:
    """A payload without its ids and clock times."""
    return {
        k: v
        for k, v in data.items()
        if k not in ("notification_id", "disclosure_id", "disclosed_at", "deadline", "applied_at")
    }


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_batch_routes_and_closes_as_its_events_would_one_by_one(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    single, batch = pools
    folded = []  # the batches the batch way took (not event by event)
    route = batches.route

    async def routing(conn: asyncpg.Connection, settings: ExchangeSettings, events: list[Any]) -> None:
        folded.append(len(events))
        await route(conn, settings, events)

    monkeypatch.setattr(batches, "route", routing)
    stream = _stream(seed)
    events = stream.events
    await _one_by_one(single, events)
    await _in_batches(batch, events, [7, 1, 30, 64, 200])
    assert await _state(single) == await _state(batch)
    assert len((await _state(batch))["notifications"]) > 20  # the stream did route
    assert len((await _state(batch))["disclosed"]) >= 20  # and told the people's registries
    assert (await _state(batch))["holders"]  # and kept who holds the marriages and births
    assert sum(folded) > len(events) / 2  # most of it the batch way

    answers = {}
    for pool in (single, batch):
        notes = await pool.fetch(
            "SELECT id, target_division, subject FROM notifications ORDER BY event_id, target_division"
        )
        answers[pool] = _answers(notes, stream.seq, seed)
    await _one_by_one(single, answers[single])
    await _in_batches(batch, answers[batch], [5, 50, 500])
    after = await _state(batch)
    assert await _state(single) == after
    assert {n["state"] for n in after["notifications"]} == {"pending", "applied", "conflict"}
    assert after["parked"] == []


async def test_a_batch_with_a_gap_or_a_waiting_event_goes_event_by_event(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    single, batch = pools
    who = new_person()
    s = Stream(3)
    s.person(who, A, A, B)
    for _ in range(4):
        s.move(who, A, A, B, C)
    first, gap, *rest = s.events[1:]
    late = [s.events[0], first, rest[0]]  # 1, 2, 4: the 4th waits for the 3rd
    for pool in (single, batch):
        if pool is single:
            await _one_by_one(pool, late)
            await _one_by_one(pool, [gap, rest[1]])  # 3 releases 4; then 5
        else:
            await _in_batches(pool, late, [3])
            await _in_batches(pool, [gap, rest[1]], [2])
    state = await _state(batch)
    assert state == await _state(single)
    assert [p["last_sequence"] for p in state["progress"]] == [5]
    assert state["parked"] == []
    assert state["roster"][0]["moves"] == 4


async def test_feedback_from_a_division_not_addressed_is_refused_in_a_batch(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    _, batch = pools
    await _in_batches(batch, [person_event(new_person(), A, A, B)], [1])
    note = await batch.fetchrow("SELECT id, subject FROM notifications")
    data = {
        "notification_id": str(note["id"]),
        "from_division": C,  # the notification went to B
        "outcome": "applied",
        "applied_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    liar = event("exchange.feedback.v1", C, data, note["subject"], 1)
    with pytest.raises(Rejected):
        await _in_batches(batch, [liar], [1])
    assert await batch.fetchval("SELECT state FROM notifications") == "pending"


def _bundled(answers: list[Envelope[Any]], seq: dict[tuple[str, str], int]) -> list[Envelope[Any]]:
    """The answers as a registry's batch way sends them: each run of plain ``applied`` answers from
    one division as one ``exchange.feedback_batch.v1``, every other answer as it was, numbered
    after the registry's events (as ``_answers`` numbers them, without the ones now in batches)."""
    out: list[Envelope[Any]] = []
    run: list[Envelope[Any]] = []
    seq = dict(seq)

    def single(a: Envelope[Any]) -> None:
        number = seq[(a.subject, a.data.from_division)] = seq.get((a.subject, a.data.from_division), 0) + 1
        out.append(a.model_copy(update={"sequence": number}))

    def flush() -> None:
        if len(run) == 1:
            single(run[0])
        elif run:
            batch_id = uuid.uuid4()
            data = {
                "batch_id": str(batch_id),
                "from_division": run[0].data.from_division,
                "answers": [a.data.model_dump(mode="json", exclude={"from_division"}) for a in run],
            }
            out.append(event("exchange.feedback_batch.v1", run[0].data.from_division, data, batch_id.hex, 1))
        run.clear()

    for a in answers:
        plain = a.data.outcome == "applied"
        if not plain or (run and run[0].data.from_division != a.data.from_division):
            flush()
        if plain:
            run.append(a)
        else:
            single(a)
    flush()
    return out


@pytest.mark.parametrize("way", ["in_batches", "one_by_one"])
async def test_batches_of_answers_close_as_their_answers_would_one_by_one(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], way: str
) -> None:
    single, batch = pools
    stream = _stream(5)
    for pool in pools:
        await _in_batches(pool, stream.events, [64] * (len(stream.events) // 64 + 1))
    answers = {}
    for pool in pools:
        notes = await pool.fetch(
            "SELECT id, target_division, subject FROM notifications ORDER BY event_id, target_division"
        )
        answers[pool] = _answers(notes, stream.seq, 5)
    await _one_by_one(single, answers[single])
    bundled = _bundled(answers[batch], stream.seq)
    assert sum(e.type == "exchange.feedback_batch.v1" for e in bundled) >= 2
    if way == "in_batches":
        await _in_batches(batch, bundled, [3, len(bundled)])
    else:
        await _one_by_one(batch, bundled)
    got, expected = await _state(batch), await _state(single)
    assert got["notifications"] == expected["notifications"]
    assert got["outbox"] == expected["outbox"]
    assert {n["state"] for n in got["notifications"]} == {"pending", "applied", "conflict"}


async def test_a_batch_of_answers_with_one_for_a_division_not_addressed_is_refused_whole(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    _, batch = pools
    await _in_batches(batch, [person_event(new_person(), A, A, B), person_event(new_person(), A, A, C)], [2])
    sent = {
        r["target_division"]: r["id"]
        for r in await batch.fetch("SELECT id, target_division FROM notifications")
    }
    assert sent.keys() == {B, C}
    batch_id = uuid.uuid4()
    data = {
        "batch_id": str(batch_id),
        "from_division": C,
        "answers": [  # its own notification, and one that went to B
            {
                "notification_id": str(sent[d]),
                "outcome": "applied",
                "applied_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            for d in (C, B)
        ],
    }
    liar = event("exchange.feedback_batch.v1", C, data, batch_id.hex, 1)
    for handle in (_in_batches, _one_by_one):
        with pytest.raises(Rejected):
            await (handle(batch, [liar], [1]) if handle is _in_batches else _one_by_one(batch, [liar]))
    assert [r["state"] for r in await batch.fetch("SELECT state FROM notifications")] == [
        "pending",
        "pending",
    ]
