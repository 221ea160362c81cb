"""Fixtures of the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.db import create_pool, migrate

REGISTRY_MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"


@pytest.fixture
async def registry_pools(pg: Any) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two empty registry databases: the same input applied two ways, one into each."""
    made = []
    for _ in range(2):
        dsn = pg.create_database(f"registry_{uuid.uuid4().hex[:12]}")
        await migrate(dsn, "registry", REGISTRY_MIGRATIONS)
        made.append(await create_pool(dsn, min_size=1, max_size=2))
    yield made[0], made[1]
    for pool in made:
        await pool.close()
