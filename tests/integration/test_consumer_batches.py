"""A consumer batch commits every good message once, whatever fails beside it (real PostgreSQL).

A batch is applied optimistically without savepoints; when one message fails, the batch is rolled
back and applied again with a savepoint per message. These tests hand ``EventConsumer.process``
records as the broker would deliver them and look at the database afterwards.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from shared.consumer import EventConsumer, PoisonMessage
from shared.consumer_admission import addressed_elsewhere
from shared.db import create_pool, migrate
from shared.events.catalog import ADDRESSEE_HEADER
from shared.events.envelope import Envelope, new_event_id
from shared.settings import BaseServiceSettings
from tests.corrections_kit import TOPIC, TRUST, signed_correction


def _record(
    offset: int,
    reason: str,
    event_id: uuid.UUID | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    **altered: Any,
) -> ConsumerRecord[bytes, bytes]:
    """A signed correction at ``offset`` as the broker would deliver it (``signed_correction``)."""
    _, value = signed_correction(offset + 1, reason, event_id, **altered)
    return ConsumerRecord(TOPIC, 0, offset, 0, 0, b"k", value, None, 1, len(value), headers or [])


async def _consumer(dsn: str, tmp_path: Path) -> EventConsumer:
    (tmp_path / "none").mkdir(exist_ok=True)
    await migrate(dsn, "batch_test", tmp_path / "none")
    pool = await create_pool(dsn, min_size=1, max_size=2)
    await pool.execute("CREATE TABLE effects (event_id uuid PRIMARY KEY, reason text)")

    async def handler(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        await conn.execute("INSERT INTO effects VALUES ($1, $2)", event.id, event.data.reason)
        if event.data.reason == "explodes":
            raise RuntimeError("the handler failed after writing")
        if event.data.reason == "poisoned":
            raise PoisonMessage("can never apply")

    settings = BaseServiceSettings(database_url=dsn, consumer_max_retries=1, service_name="batch-test")
    return EventConsumer(pool, settings, name="batch", topics=[TOPIC], handler=handler, trust=TRUST)


async def _effects(consumer: EventConsumer) -> list[str]:
    rows = await consumer.pool.fetch("SELECT reason FROM effects ORDER BY reason")
    return [r["reason"] for r in rows]


async def test_a_failing_message_leaves_the_rest_of_its_batch_applied_once(
    fresh_db: str, tmp_path: Path
) -> None:
    consumer = await _consumer(fresh_db, tmp_path)
    try:
        twice = new_event_id()
        batch = [
            _record(0, "good 0", twice),
            _record(1, "good 1"),
            _record(2, "explodes"),
            _record(3, "good 3"),
            _record(4, "poisoned"),
            _record(5, "good 0 again", twice),  # the same event redelivered
            _record(6, "good 6"),
        ]
        await consumer.process(batch)
        assert await _effects(consumer) == ["good 0", "good 1", "good 3", "good 6"]
        assert await consumer.pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'batch'") == 4
        dead = await consumer.pool.fetch('SELECT "offset", reason FROM dead_letters ORDER BY "offset"')
        assert [(r["offset"], r["reason"].split(":")[0]) for r in dead] == [
            (2, "RuntimeError"),
            (4, "PoisonMessage"),
        ]
        assert (
            await consumer.pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", TOPIC + ".dlq") == 2
        )

        await consumer.process([_record(7, "good 7"), _record(8, "good 8")])  # a clean batch
        assert await _effects(consumer) == ["good 0", "good 1", "good 3", "good 6", "good 7", "good 8"]
        assert await consumer.pool.fetchval("SELECT count(*) FROM dead_letters") == 2
    finally:
        await consumer.pool.close()


async def test_a_batch_handler_takes_clean_batches_whole_and_a_failing_one_event_by_event(
    fresh_db: str, tmp_path: Path
) -> None:
    consumer = await _consumer(fresh_db, tmp_path)
    wholes: list[list[str]] = []

    async def whole(conn: asyncpg.Connection, events: list[Envelope[Any]]) -> None:
        wholes.append([e.data.reason for e in events])
        await conn.executemany("INSERT INTO effects VALUES ($1, $2)", [(e.id, e.data.reason) for e in events])
        if any(e.data.reason == "explodes" for e in events):
            raise RuntimeError("one of the batch failed after writing")

    consumer.batch = whole
    try:
        again = new_event_id()
        await consumer.process([_record(0, "one", again), _record(1, "two"), _record(2, "one again", again)])
        assert wholes == [["one", "two"]]  # one call, the repeated id once
        assert await _effects(consumer) == ["one", "two"]

        await consumer.process(
            [_record(0, "one", again), _record(3, "three")]
        )  # a redelivery beside a new one
        assert wholes[-1] == ["three"]
        await consumer.process([_record(4, "four"), _record(5, "explodes"), _record(6, "five")])
        assert wholes[-1] == ["four", "explodes", "five"]  # rolled back whole, then event by event:
        assert await _effects(consumer) == ["five", "four", "one", "three", "two"]
        dead = await consumer.pool.fetch('SELECT "offset", reason FROM dead_letters')
        assert [(r["offset"], r["reason"].split(":")[0]) for r in dead] == [(5, "RuntimeError")]
        assert await consumer.pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'batch'") == 5
    finally:
        await consumer.pool.close()


async def test_the_group_position_is_recorded_with_the_batch_and_never_without_it(
    fresh_db: str, tmp_path: Path
) -> None:
    """``process`` records where the group stands in the batch's own transaction: a batch the
    database refused moves nothing, and a batch with a failed message moves it once that one is
    dead-lettered."""
    consumer = await _consumer(fresh_db, tmp_path)
    part = TopicPartition(TOPIC, 0)

    async def position() -> int | None:
        return await consumer.pool.fetchval(  # type: ignore[no-any-return]
            "SELECT next_offset FROM consumer_positions WHERE consumer = 'batch'"
        )

    plain = consumer.handler

    async def refused(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
        await plain(conn, event)
        raise asyncpg.exceptions.DeadlockDetectedError("the database chose this transaction")

    try:
        await consumer.process([_record(0, "good 0"), _record(1, "good 1")], {part: 2})
        assert (await _effects(consumer), await position()) == (["good 0", "good 1"], 2)

        consumer.handler = refused  # the database, not the message: the whole batch is read again
        with pytest.raises(asyncpg.exceptions.DeadlockDetectedError):
            await consumer.process([_record(2, "good 2")], {part: 3})
        assert (await _effects(consumer), await position()) == (["good 0", "good 1"], 2)

        consumer.handler = plain
        await consumer.process([_record(2, "good 2"), _record(3, "explodes")], {part: 4})
        assert (await _effects(consumer), await position()) == (["good 0", "good 1", "good 2"], 4)
        assert await consumer.pool.fetchval("SELECT count(*) FROM dead_letters") == 1
    finally:
        await consumer.pool.close()


async def test_events_addressed_elsewhere_are_left_unparsed_and_the_rest_judged_in_full(
    fresh_db: str, tmp_path: Path
) -> None:
    """``addressed`` looks at the decoded JSON before parsing: someone else's event, even a
    malformed one, is passed over and leaves nothing here (no effect, no dead letter keeping a
    copy); an event for this consumer, or one whose addressee cannot be read, is parsed and
    judged as before."""
    consumer = await _consumer(fresh_db, tmp_path)
    consumer.addressed = lambda doc: not doc["data"]["reason"].startswith("elsewhere")
    try:
        batch = [
            _record(0, "elsewhere, well formed"),
            _record(1, "elsewhere, malformed", sequence=0),
            _record(2, "ours, malformed", sequence=0),
            _record(3, "ours"),
            _record(4, "no addressee", data=None),
        ]
        await consumer.process(batch)
        assert await _effects(consumer) == ["ours"]
        dead = await consumer.pool.fetch('SELECT "offset", reason FROM dead_letters ORDER BY "offset"')
        assert [(r["offset"], r["reason"].split(":")[1].strip()) for r in dead] == [
            (2, "sequence"),
            (4, "data"),
        ]
    finally:
        await consumer.pool.close()


async def test_a_message_whose_addressee_header_names_only_others_is_passed_over_undecoded(
    fresh_db: str, tmp_path: Path
) -> None:
    """With ``addressed_elsewhere``, the addressee header is read before the JSON: a message whose header names
    only other divisions is passed over undecoded (even one that is not JSON leaves no dead
    letter, and even one whose JSON is for this consumer: a header that lies hides no more than a
    broker dropping the message would). A header naming a division served here, or no header,
    leads to the JSON, whose addressee and signature still decide."""
    consumer = await _consumer(fresh_db, tmp_path)
    consumer.passed_over = addressed_elsewhere(frozenset({"440703", "440704"}))
    consumer.addressed = lambda doc: not doc["data"]["reason"].startswith("elsewhere")
    elsewhere, ours = [(ADDRESSEE_HEADER, b"110101,320412")], [(ADDRESSEE_HEADER, b"320412,440704")]
    not_json = b"{not json"
    try:
        batch = [
            _record(0, "ours by JSON, header elsewhere", headers=elsewhere),
            ConsumerRecord(TOPIC, 0, 1, 0, 0, b"k", not_json, None, 1, len(not_json), elsewhere),
            _record(2, "elsewhere by JSON, header ours", headers=ours),
            _record(3, "ours, header ours", headers=ours),
            _record(4, "ours, no header"),
            ConsumerRecord(TOPIC, 0, 5, 0, 0, b"k", not_json, None, 1, len(not_json), ours),
            _record(6, "ours, malformed, header ours", headers=ours, sequence=0),
        ]
        await consumer.process(batch)
        assert sorted(await _effects(consumer)) == ["ours, header ours", "ours, no header"]
        dead = await consumer.pool.fetch('SELECT "offset" FROM dead_letters ORDER BY "offset"')
        assert [r["offset"] for r in dead] == [5, 6]
        assert await consumer.pool.fetchval("SELECT count(*) FROM inbox") == 2
    finally:
        await consumer.pool.close()
