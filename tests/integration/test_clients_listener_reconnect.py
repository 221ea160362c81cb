"""The clients' listener closes its connection before it connects again (real PostgreSQL).

Every service listens for ``clients_changed`` on a connection of its own
(``shared.auth.ClientRegistry``) and, when that connection is lost or an error ends its watch,
connects again. Here the listener's connection is cut while the ``clients`` table is away, so every
reconnection fails (its first read finds no table) and tries again a second later. Each attempt's
connection must be closed by the registry before the next one opens: left open, it lingers until
the garbage collector finalizes it (asyncpg's "unclosed connection" warning; later still if
anything keeps it referenced), one per error.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.auth import ClientRegistry
from shared.db import create_pool, migrate

ROOT = Path(__file__).resolve().parents[2]
LISTENERS = """SELECT pid FROM pg_stat_activity
               WHERE datname = current_database() AND query LIKE 'LISTEN%clients_changed%'"""


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(fresh_db, "verification", ROOT / "services" / "verification" / "migrations")
    p = await create_pool(fresh_db, min_size=1, max_size=2)
    yield p
    await p.close()


async def test_failed_reconnections_close_each_listener_connection(
    pool: asyncpg.Pool, fresh_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = ClientRegistry(pool, fresh_db)
    await registry.start()
    admin = await asyncpg.connect(fresh_db)
    listeners: set[str] = set()  # the registry's listener connections, as asyncpg names them
    caplog.set_level(logging.WARNING, "shared.auth")
    try:
        while not await admin.fetch(LISTENERS):
            await asyncio.sleep(0.05)
        listeners.add(repr(registry._listener))
        await admin.execute("ALTER TABLE clients RENAME TO clients_away")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            await admin.execute(f"SELECT pg_terminate_backend(pid) FROM ({LISTENERS}) l")
            deadline = time.monotonic() + 4.5  # about four attempts, each failing its first read
            while time.monotonic() < deadline:
                if registry._listener is not None:
                    listeners.add(repr(registry._listener))
                await asyncio.sleep(0.05)
            reconnections = [r for r in caplog.records if r.getMessage() == "client listener reconnecting"]
            assert len(reconnections) >= 3  # it did connect again, and fail, again and again
            assert len(await admin.fetch(LISTENERS)) <= 1
        left = [str(w.message) for w in caught if any(c in str(w.message) for c in listeners)]
        assert not left, left
        await admin.execute("ALTER TABLE clients_away RENAME TO clients")
    finally:
        await registry.stop()
        await admin.execute(f"SELECT pg_terminate_backend(pid) FROM ({LISTENERS}) l")  # any left
        await admin.close()
