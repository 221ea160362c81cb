"""The one unit of work (``shared.db``): commit then wake the relay, roll back on error, and never
hand a connection the database dropped back to the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import RELAY_CHANNEL, is_unavailable, unit_of_work, unit_of_work_on
from shared.idempotency import held_connection, hold_connection


class _Refused(Exception):
    pass


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(fresh_db, min_size=1, max_size=2)
    assert created is not None
    async with created.acquire() as conn:
        await conn.execute("CREATE TABLE rows (n int PRIMARY KEY)")
    yield created
    await created.close()


@pytest.fixture
async def wakes(fresh_db: str) -> AsyncIterator[asyncio.Queue[str]]:
    """What the relay would hear: one item per NOTIFY on its channel."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(fresh_db)
    await listener.add_listener(RELAY_CHANNEL, lambda *args: heard.put_nowait(args[2]))
    yield heard
    await listener.close()


async def _count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM rows"))


async def test_a_unit_of_work_commits_and_then_wakes_the_relay(
    pool: asyncpg.Pool, wakes: asyncio.Queue[str]
) -> None:
    async with unit_of_work(pool) as conn:
        await conn.execute("INSERT INTO rows VALUES (1)")
        assert conn.is_in_transaction()
    assert await _count(pool) == 1
    assert await asyncio.wait_for(wakes.get(), 5) == RELAY_CHANNEL

    async with unit_of_work(pool, wake=False) as conn:
        await conn.execute("INSERT INTO rows VALUES (2)")
    assert await _count(pool) == 2
    await asyncio.sleep(0.3)
    assert wakes.empty()


async def test_a_unit_of_work_that_raises_leaves_nothing_and_wakes_no_one(
    pool: asyncpg.Pool, wakes: asyncio.Queue[str]
) -> None:
    with pytest.raises(_Refused):
        async with unit_of_work(pool) as conn:
            await conn.execute("INSERT INTO rows VALUES (1)")
            raise _Refused
    async with pool.acquire() as conn:
        # The same connection, healthy and out of any transaction, ready for the next unit.
        assert not conn.is_closed() and not conn.is_in_transaction()
        async with unit_of_work_on(conn):
            await conn.execute("INSERT INTO rows VALUES (2)")
    assert await _count(pool) == 1
    await asyncio.sleep(0.3)
    assert wakes.qsize() == 1  # the second unit's only


async def test_a_connection_the_database_dropped_is_terminated_not_pooled(pool: asyncpg.Pool) -> None:
    dropped: list[asyncpg.Connection] = []
    with pytest.raises(Exception) as raised:
        async with unit_of_work(pool) as conn:
            dropped.append(conn)
            await conn.execute("INSERT INTO rows VALUES (1)")
            pid = conn.get_server_pid()
            async with pool.acquire() as other:
                assert await other.fetchval("SELECT pg_terminate_backend($1)", pid)
            await conn.execute("INSERT INTO rows VALUES (2)")
    assert is_unavailable(raised.value)
    async with pool.acquire() as conn:
        assert conn.get_server_pid() != pid  # a fresh connection, not the dead one
    assert await _count(pool) == 0


def test_the_idempotency_middleware_hands_its_connection_to_the_route_explicitly() -> None:
    scope: dict[str, object] = {"type": "http", "state": {}}
    assert held_connection(scope) is None
    conn = object()
    hold_connection(scope, conn)  # type: ignore[arg-type]
    assert held_connection(scope) is conn
    assert held_connection({"type": "http"}) is None  # no state at all: no key was sent
