"""Messages straight onto the topics: malformed ones are dead-lettered with a reason and the
consumers go on; a duplicate, a reordered and a stale event each have one effect, and the
state they leave is the one their sequence says."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bench.common import migration
from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.events import payloads as p
from shared.events.catalog import DISCLOSURE_TOPIC, TOPICS, spec_for
from shared.events.envelope import Envelope, new_event_id
from shared.identity import subject_key
from tests.helpers import signed
from tests.reliability.fault_tools import emit_departures, migrants, wait_complete

pytestmark = pytest.mark.e2e

# Which service's consumers read each topic (each one must dead-letter what it cannot read).
READERS = {
    "exchange.notification.v1": [f"registry-{ORIGIN}", f"registry-{DESTINATION}"],
    "exchange.feedback.v1": ["migrant_exchange"],
    "certificate.lifecycle.v1": ["verification", "migrant_exchange"],  # the exchange: indicators, repairs
    DISCLOSURE_TOPIC: [f"registry-{ORIGIN}", f"registry-{DESTINATION}", "migrant_exchange"],
}


def _readers(topic: str) -> list[str]:
    return READERS.get(topic, ["migrant_exchange"] if topic.startswith("vital.") else [])


def _bad_messages(topic: str, raw_id: str) -> list[tuple[str, bytes]]:
    good_shape: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/registry/{ORIGIN}",
        "subject": "0" * 32,
        "time": "2026-01-01T00:00:00Z",
        "dataschema": "x",
        "sequence": 1,
    }
    # A valid event of a type that belongs on another topic.
    if topic != "certificate.lifecycle.v1":
        other = {
            "type": "certificate.revoked.v1",
            "data": {
                "certificate_number": f"{ORIGIN}-2026-ABCDEFGH",
                "issuer": ORIGIN,
                "revoked_on": "2026-01-01",
                "reason": "lost",
                "status_index": 1,
            },
        }
    else:
        other = {
            "type": "person.registered.v1",
            "data": {
                "id_number": raw_id,
                "name": "测试",
                "sex": "F",
                "birth_date": f"{raw_id[6:10]}-{raw_id[10:12]}-{raw_id[12:14]}",
                "hukou_division": ORIGIN,
                "residence_division": ORIGIN,
            },
        }
    own_type = next(t for t in _types() if spec_for(t).topic == topic)
    return [
        ("not-json", b"\xff\xfe this is not JSON \x00"),
        ("not-an-object", b"[1, 2, 3]"),
        ("no-envelope", orjson.dumps({"hello": "world"})),
        ("unknown-type", orjson.dumps({**good_shape, "type": "nothing.happened.v1", "data": {}})),
        ("wrong-payload", orjson.dumps({**good_shape, "type": own_type, "data": {"id_number": raw_id}})),
        ("wrong-topic", orjson.dumps({**good_shape, **other})),
    ]


def _types() -> list[str]:
    from shared.events.catalog import CATALOG

    return list(CATALOG)


async def _produce(stack: Stack, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_malformed_messages_on_every_topic_are_dead_lettered(fault_stack: Stack) -> None:
    raw_id = migrants(1)[0]
    run = uuid.uuid4().hex[:8]
    sent: list[tuple[str, bytes | None, bytes]] = []
    for round_ in (1, 2):  # the second round proves the consumers went on after the first
        for topic in TOPICS:
            assert _readers(topic), f"nobody consumes {topic}: its bad messages would go unnoticed"
            for kind, value in _bad_messages(topic, raw_id):
                sent.append((topic, f"{run}:{round_}:{kind}".encode(), value))
    await _produce(fault_stack, sent)

    missing: list[str] = []
    for _ in range(60):
        missing = []
        for topic, key, _value in sent:
            for service in _readers(topic):
                rows = await _fetch(
                    fault_stack.service(service).dsn,
                    "SELECT consumer, reason FROM dead_letters WHERE topic = $1 AND key = $2",
                    topic,
                    key.decode() if key else None,
                )
                # once by every consumer of the service that reads the topic, with a clean reason
                consumers = [r["consumer"] for r in rows]
                once_each = bool(rows) and len(consumers) == len(set(consumers))
                if not once_each or any(not r["reason"] or raw_id in r["reason"] for r in rows):
                    missing.append(
                        f"{service} {topic} {key!r}: {[(r['consumer'], r['reason']) for r in rows]}"
                    )
        if not missing:
            break
        await asyncio.sleep(0.5)
    assert not missing, f"{len(missing)} not dead-lettered once with a clean reason: {missing[:5]}"

    # Each dead letter also went out on <topic>.dlq, and the consumers still apply good events.
    for service in ("migrant_exchange", f"registry-{ORIGIN}", "verification"):
        rows = await _fetch(
            fault_stack.service(service).dsn,
            "SELECT count(*) AS n, count(published_at) AS published FROM outbox WHERE topic LIKE '%.dlq' "
            "AND key LIKE $1",
            f"{run}:%",
        )
        assert rows[0]["n"] > 0
    people = migrants(50)
    ids = await emit_departures(fault_stack, people)
    counts = await wait_complete(fault_stack, people, ids, timeout=60)
    assert counts.complete(), counts
    print(
        f"\ndead letters: {len(sent)} bad messages on {len(TOPICS)} topics, all dead-lettered; then {counts}"
    )


def _move(
    cls: type[p._MigrationV1], n: str, seq: int, src: str, dst: str, day: int, secret: bytes
) -> Envelope[Any]:
    return Envelope[cls](  # type: ignore[valid-type]
        id=new_event_id(),
        source=f"/registry/{ORIGIN}",
        type=f"migration.{cls.__name__.removeprefix('Migration').removesuffix('V1').lower()}.v1",
        subject=subject_key(n, secret),
        time=dt.datetime(2025, 1, day, tzinfo=dt.UTC),
        dataschema=spec_for("migration.departed.v1").dataschema,
        sequence=seq,
        origin=ORIGIN,
        destination=dst,
        data=migration(cls, n, dt.date(2025, 1, day), name="周洁", from_division=src, to_division=dst),
    )


async def test_duplicate_reordered_and_stale_events_have_one_effect_each(fault_stack: Stack) -> None:
    n = migrants(1)[0]
    secret = fault_stack.subject_secret.encode()
    left = _move(p.MigrationDepartedV1, n, 1, ORIGIN, DESTINATION, 1, secret)
    came_back = _move(p.MigrationReturnedV1, n, 2, DESTINATION, ORIGIN, 2, secret)
    left_again = _move(p.MigrationDepartedV1, n, 3, ORIGIN, DESTINATION, 3, secret)
    # 1, 1 again (duplicate), 3 before 2 (reordered), then 2 arrives late (stale), then 1 once more.
    order = [left, left, left_again, came_back, left]
    topic = spec_for("migration.departed.v1").topic
    key = left.subject.encode()
    await _produce(fault_stack, [(topic, key, signed(fault_stack, e)) for e in order])

    exchange = fault_stack.service("migrant_exchange").dsn
    dest = fault_stack.service(f"registry-{DESTINATION}").dsn
    ids = [left.id, came_back.id, left_again.id]
    for _ in range(60):
        notes = await _fetch(
            exchange,
            "SELECT event_id, event_sequence, state FROM notifications WHERE event_id = ANY($1)",
            ids,
        )
        if len(notes) == 3 and all(r["state"] == "applied" for r in notes):
            break
        await asyncio.sleep(0.5)
    assert sorted(r["event_sequence"] for r in notes) == [1, 2, 3], notes
    assert all(r["state"] == "applied" for r in notes), notes

    roster = await _fetch(
        exchange, "SELECT residence_division, moves FROM roster WHERE subject = $1", left.subject
    )
    assert roster[0]["moves"] == 3, "each distinct event moves the person once"
    assert roster[0]["residence_division"] == DESTINATION, "the stale return undid the later departure"

    moves = await _fetch(dest, "SELECT source_event_id FROM migrations WHERE id_number = $1", n)
    assert sorted(r["source_event_id"] for r in moves) == sorted(ids), "one row per distinct event"
    person = await _fetch(dest, "SELECT residence_division FROM persons WHERE id_number = $1", n)
    assert person[0]["residence_division"] == DESTINATION, (
        "the destination applied the stale return last and lost the later departure"
    )
