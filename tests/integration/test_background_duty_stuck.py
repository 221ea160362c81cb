"""A background duty that hangs is seen on the metrics (real PostgreSQL, the services' retention).

Every periodic duty counts its rounds by outcome (``shared.observability.Duty``), and
``BackgroundDutyFailing`` alerts on failed rounds. A round that hangs ends neither way: here the
retention purge waits on a table another connection holds locked (up to the pool's 30 s statement
timeout, then again next round), or for a connection of its pool while all of them are busy (no
timeout at all). What the scrape serves must show that round running, for as long as it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared import retention
from shared.db import create_pool, migrate
from shared.settings import BaseServiceSettings

ROOT = Path(__file__).resolve().parents[2]
HUNG = 3.0  # seconds the test watches the hung round


def _scraped(service: str) -> dict[str, float]:
    """The retention duty's series, as ``/metrics`` serves them (``generate_latest``)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.labels.get("service") == service and sample.labels.get("duty") == "retention":
                found[sample.name + "/" + sample.labels.get("outcome", "")] = sample.value
    return found


async def _until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    async def wait() -> None:
        while not check():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), seconds)


@contextlib.asynccontextmanager
async def _locked(dsn: str, table: str) -> AsyncIterator[None]:
    """``table`` locked ACCESS EXCLUSIVE by another connection for the block."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _all_busy(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Every connection of ``pool`` taken (as by requests each holding one) for the block."""
    async with contextlib.AsyncExitStack() as held:
        for _ in range(pool.get_max_size()):
            await held.enter_async_context(pool.acquire())
        yield


@pytest.mark.parametrize("hang", ["table locked", "pool busy"])
async def test_a_hung_retention_round_is_scraped_as_running_until_it_ends(fresh_db: str, hang: str) -> None:
    await migrate(fresh_db, "verification", ROOT / "services" / "verification" / "migrations")
    service = f"stuck-{hang.replace(' ', '-')}"
    settings = BaseServiceSettings(
        service_name=service, database_url=fresh_db, retention_interval_seconds=0.1
    )
    pool = await create_pool(fresh_db, min_size=1, max_size=2)
    purges = retention.shared_purges(settings)
    duty = asyncio.create_task(retention.run(pool, settings, purges))
    try:
        await _until(lambda: _scraped(service).get("background_duty_rounds_total/ok", 0) >= 2)
        hold = _locked(fresh_db, "idempotency_keys") if hang == "table locked" else _all_busy(pool)
        async with hold:
            await asyncio.sleep(0.5)  # the round after the last one ended has begun, and waits
            before = _scraped(service)
            await asyncio.sleep(HUNG)
            during = _scraped(service)
            # No round ends either way: nothing BackgroundDutyFailing could see...
            for outcome in ("ok", "failed"):
                key = f"background_duty_rounds_total/{outcome}"
                assert during[key] == before[key], (hang, before, during)
            # ...but the round in progress is served, as long as it has run (BackgroundDutyStuck).
            running = during.get("background_duty_round_running_seconds/")
            assert running is not None and running >= HUNG, (hang, during)
        ok = during["background_duty_rounds_total/ok"]
        await _until(lambda: _scraped(service)["background_duty_rounds_total/ok"] > ok)
        await _until(lambda: _scraped(service)["background_duty_round_running_seconds/"] < 1)
    finally:
        duty.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await duty
        await pool.close()
