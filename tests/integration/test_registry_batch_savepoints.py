"""The batch use case's savepoints against real PostgreSQL: what an item's database failure costs.

An item refused by a rule or by a constraint after it wrote leaves no row (its savepoint is
rolled back) and the other items commit; a lock timeout fails the whole batch as a 503.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from services.registry.service_layer.batches import NotTogether, Prepared, record_each
from shared.errors import DomainError, RuleViolation, ServiceUnavailable


def _insert(value: int, then: Exception | None = None) -> Prepared:
    async def item(conn: asyncpg.Connection) -> dict[str, Any]:
        await conn.execute("INSERT INTO t (v) VALUES ($1)", value)
        if then is not None:
            raise then
        return {"v": value}

    return Prepared(item)  # type: ignore[arg-type]  # a dict stands for the use case's answer


async def _table(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE t (v int NOT NULL CHECK (v < 1000), UNIQUE (v))")
    return conn


async def test_a_refused_item_leaves_no_row_and_the_others_commit(fresh_db: str) -> None:
    conn = await _table(fresh_db)
    try:
        items: list[Prepared | DomainError] = [
            _insert(1),
            _insert(2, then=RuleViolation("after a write", field="v", rule="some-rule")),
            _insert(1),  # unique violation: the records disagree with the item (409)
            _insert(5000),  # check violation (409, as the single route's edge answers it)
            RuleViolation("refused at the edge", field="x", rule="edge"),
            _insert(3),
        ]
        async with conn.transaction():
            outcomes = await record_each(conn, items)
        answers = [(o.result, o.error.status if o.error else None) for o in outcomes]
        assert answers == [
            ({"v": 1}, None),
            (None, 422),
            (None, 409),
            (None, 409),
            (None, 422),
            ({"v": 3}, None),
        ]
        assert outcomes[1].error is not None and outcomes[1].error.rule == "some-rule"
        assert sorted(r["v"] for r in await conn.fetch("SELECT v FROM t")) == [1, 3]
    finally:
        await conn.close()


async def test_a_value_the_database_cannot_hold_is_the_items_fault(fresh_db: str) -> None:
    conn = await _table(fresh_db)
    try:
        async with conn.transaction():
            outcomes = await record_each(conn, [_insert(2**40), _insert(4)])
        assert outcomes[0].error is not None and outcomes[0].error.rule == "storable-value"
        assert [r["v"] for r in await conn.fetch("SELECT v FROM t")] == [4]
    finally:
        await conn.close()


async def test_a_lock_timeout_fails_the_whole_batch(fresh_db: str) -> None:
    conn, other = await _table(fresh_db), await asyncpg.connect(fresh_db)
    try:
        blocker = other.transaction()
        await blocker.start()
        await other.execute("INSERT INTO t (v) VALUES (7)")  # holds the key 7 until it ends
        with pytest.raises(ServiceUnavailable) as raised:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '100ms'")
                await record_each(conn, [_insert(6), _insert(7), _insert(8)])
        assert raised.value.status == 503 and raised.value.extra["retry_after"] == 1
        await blocker.rollback()
        assert await conn.fetch("SELECT v FROM t") == []
    finally:
        await conn.close()
        await other.close()


async def test_savepoints_only_once_an_item_is_refused(fresh_db: str) -> None:
    """A clean batch runs each item once in one savepoint; a refusal reruns the batch item by item."""
    conn = await _table(fresh_db)
    runs: list[int] = []

    def counted(value: int) -> Prepared:
        async def item(c: asyncpg.Connection) -> Any:
            runs.append(value)
            return await _insert(value).one(c)

        return Prepared(item)

    try:
        async with conn.transaction():
            await record_each(conn, [counted(1), counted(2)])
        assert runs == [1, 2]
        runs.clear()
        async with conn.transaction():
            outcomes = await record_each(conn, [counted(3), counted(1), counted(4)])
        assert runs == [3, 1, 3, 1, 4]  # up to the refusal, then again with a savepoint per item
        assert [o.error.status if o.error else None for o in outcomes] == [None, 409, None]
        assert sorted(r["v"] for r in await conn.fetch("SELECT v FROM t")) == [1, 2, 3, 4]
    finally:
        await conn.close()


async def test_a_run_that_cannot_be_recorded_together_is_recorded_one_by_one(fresh_db: str) -> None:
    """``together`` raising ``NotTogether`` after it wrote: its writes are gone and every item of
    the batch runs again alone, in a savepoint of its own."""
    conn = await _table(fresh_db)

    async def together(c: asyncpg.Connection, values: list[Any], _traces: list[str | None]) -> Any:
        await c.executemany("INSERT INTO t (v) VALUES ($1)", [(v + 100,) for v in values])
        raise NotTogether("found otherwise than read")

    def item(value: int) -> Prepared:
        return Prepared(_insert(value).one, "t", value, together)

    try:
        async with conn.transaction():
            outcomes = await record_each(conn, [item(1), item(2), _insert(3)])
        assert [o.result for o in outcomes] == [{"v": 1}, {"v": 2}, {"v": 3}]
        assert sorted(r["v"] for r in await conn.fetch("SELECT v FROM t")) == [1, 2, 3]
    finally:
        await conn.close()
