"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devstack.trust import TrustFiles
from tests.exchange.exchange_helpers import A, B, C, migrated_exchange
from tests.helpers import two_databases

REGISTRY_MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"


@pytest.fixture
async def registry_pools(pg: Any) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    async with two_databases(pg, "registry", REGISTRY_MIGRATIONS) as pools:
        yield pools


@pytest.fixture
async def exchange(pg: Any, request: pytest.FixtureRequest) -> AsyncIterator[asyncpg.Pool]:
    """The exchange's database, migrated, named after the test module."""
    async with migrated_exchange(pg, request.module.__name__.rsplit(".", 1)[-1][:40]) as made:
        yield made


@pytest.fixture
def trust(tmp_path: Path) -> TrustFiles:
    """A trust list of the three registries A, B, C and the exchange, with their keys."""
    files = TrustFiles(tmp_path / "trust")
    files.write([A, B, C], {})
    return files
