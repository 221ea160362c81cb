"""A service's shutdown (``shared.shutdown``) ends within its bound, on a real PostgreSQL, even when
a connection is never handed back or a task swallows its cancellation, and says what it waited
for; what the stuck work held is rolled back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.shutdown import shut_down, stop_tasks


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(fresh_db, min_size=1, max_size=3)
    assert created is not None
    await created.execute("CREATE TABLE rows (n int PRIMARY KEY)")
    yield created
    created.terminate()


def _overrun(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.getMessage().startswith("shutdown overran")]
    return record


async def _backend_gone(dsn: str, pid: int) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(50):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                return True
            await asyncio.sleep(0.1)
        return False
    finally:
        await conn.close()


async def test_a_connection_never_handed_back_cannot_hold_the_shutdown(
    pool: asyncpg.Pool, fresh_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    holding = asyncio.Event()
    backend: list[int] = []

    async def hold_a_write() -> None:
        async with pool.acquire() as conn, conn.transaction():
            backend.append(conn.get_server_pid())
            await conn.execute("INSERT INTO rows VALUES (1)")
            holding.set()
            await asyncio.Event().wait()  # a handler stuck on something that never comes

    stuck = asyncio.create_task(hold_a_write(), name="stuck-writer")
    await holding.wait()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="shared.shutdown"):
        stopped = await shut_down([("database pool", pool.close)], pool, timeout=0.5)
    took = time.monotonic() - started

    assert not stopped
    assert took < 3.0, f"shutdown took {took:.1f} s with a 0.5 s bound"
    record = _overrun(caplog)
    assert record.step == "database pool"  # type: ignore[attr-defined]
    assert any(w.startswith("stuck-writer: ") and "hold_a_write" in w for w in record.waiting)  # type: ignore[attr-defined]
    # The far side: PostgreSQL dropped the connection and rolled back what it held.
    assert await _backend_gone(fresh_db, backend[0])
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM rows") == 0
    finally:
        await conn.close()
    stuck.cancel()
    await asyncio.gather(stuck, return_exceptions=True)


async def test_a_task_that_swallows_its_cancellation_is_named_and_cut_off(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    released: list[bool] = []

    async def stubborn() -> None:
        while not released:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # the bug the bound exists for

    task = asyncio.create_task(stubborn(), name="stubborn-consumer")
    await asyncio.sleep(0)
    pool_closed: list[bool] = []

    async def close_pool() -> None:
        await pool.close()
        pool_closed.append(True)

    with caplog.at_level(logging.INFO, logger="shared.shutdown"):
        stopped = await shut_down(
            [("background tasks", lambda: stop_tasks([task])), ("database pool", close_pool)],
            pool,
            timeout=0.5,
        )

    assert not stopped
    record = _overrun(caplog)
    assert record.step == "background tasks"  # type: ignore[attr-defined]
    assert any(w.startswith("stubborn-consumer: ") and "stubborn" in w for w in record.waiting)  # type: ignore[attr-defined]
    assert not pool_closed  # cut off at the deadline: the pool was terminated instead
    with pytest.raises(asyncpg.InterfaceError):
        await pool.fetchval("SELECT 1")
    released.append(True)
    await task


async def test_steps_run_in_order_and_a_failing_step_does_not_stop_the_next(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    async def resources() -> None:
        ran.append("resources")
        raise RuntimeError("a close that failed")

    async def tasks() -> None:
        ran.append("tasks")

    async def close_pool() -> None:
        await pool.close()
        ran.append("pool")

    with caplog.at_level(logging.INFO, logger="shared.shutdown"):
        stopped = await shut_down(
            [("service resources", resources), ("background tasks", tasks), ("database pool", close_pool)],
            pool,
            timeout=5,
        )

    assert stopped
    assert ran == ["resources", "tasks", "pool"]
    (failed,) = [r for r in caplog.records if r.getMessage() == "shutdown step failed"]
    assert (failed.step, failed.error) == ("service resources", "RuntimeError")  # type: ignore[attr-defined]
    assert pool.is_closing()
