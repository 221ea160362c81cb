"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import two_databases

REGISTRY_MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"


@pytest.fixture
async def registry_pools(pg: Any) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    async with two_databases(pg, "registry", REGISTRY_MIGRATIONS) as pools:
        yield pools
