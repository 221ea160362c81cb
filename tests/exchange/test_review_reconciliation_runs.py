"""What a pair's runs set aside (three registries on the real broker, over HTTP): two runs of one
pair at once both remember it, and a registry is told to leave out only records it holds.

A scheduled round holds an advisory lock against other rounds, but an operator's run of a pair
(``POST /v1/reconciliations``) takes none: it may run beside the round's run of the same pair. Both
judge the same records set aside (``domain/reconcile.py`` ``set_aside``) and write them to
``reconciliation_set_aside``; the one writing second must not fail on the rows the first wrote.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from devstack.stack import Stack
from services.migrant_exchange.adapters import reconciliations as runs
from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.service_layer import reconciliation
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import create_pool
from tests.exchange.exchange_helpers import A, C, reconciliation_settings
from tests.exchange.test_reconciliation_held_records import BUCKETS, _moved_on_to_c
from tests.helpers import lock_waiters, query

pytestmark = pytest.mark.e2e


def test_a_run_beside_another_of_its_pair_keeps_what_both_set_aside(xstack: Stack) -> None:
    _, number = _moved_on_to_c(xstack)  # A's certificate, sent to B alone: set aside for A-C
    exchange_db = xstack.service("migrant_exchange").dsn
    settings = reconciliation_settings(
        xstack, reconciliation_buckets=BUCKETS, reconciliation_timeout_seconds=60
    )
    a, c = sorted((A, C))

    async def run() -> dict[str, object]:
        pool = await create_pool(exchange_db, min_size=1, max_size=3)
        registries = RegistryClient(settings)
        other = await asyncpg.connect(exchange_db)  # the other run of the pair, about to commit
        watch = await asyncpg.connect(exchange_db)
        try:
            async with other.transaction():
                await runs.keep_set_aside(other, a, c, [("certificate", number)])
                mine = asyncio.ensure_future(
                    reconciliation.reconcile(
                        pool, settings, registries, reconciliation.Reconcile(A, C, "request")
                    )
                )
                await lock_waiters(watch, 1, unless=mine)
            return await mine
        finally:
            await registries.close()
            await asyncio.gather(other.close(), watch.close())
            await pool.close()

    done = asyncio.run(run())
    assert done["state"] == "finished"
    kept = query(
        exchange_db,
        """SELECT record_type, record_key FROM reconciliation_set_aside
           WHERE division_a = $1 AND division_b = $2""",
        a,
        c,
    )
    assert ("certificate", number) in {(r["record_type"], r["record_key"]) for r in kept}


class _NotingLeftOut(RegistryClient):
    """The exchange's own registry client, noting the records each registry is asked to leave out."""

    def __init__(self, settings: ExchangeSettings) -> None:
        super().__init__(settings)
        self.told: dict[str, set[tuple[str, str]]] = {}

    async def digests(
        self, jurisdiction: str, counterpart: str, buckets: int, left_out: list[tuple[str, str]]
    ) -> dict[str, Any]:
        self.told.setdefault(jurisdiction, set()).update(left_out)
        return await super().digests(jurisdiction, counterpart, buckets, left_out)


def test_a_registry_is_not_told_the_keys_of_records_it_was_never_sent(xstack: Stack) -> None:
    """After A -> B -> C, C was never sent the certificate A issued her at B, nor the birth and the
    certificate B registered then (``_moved_on_to_c``). A-C's runs set them aside; the next asks
    A, which holds them, to leave them out of its digests, and must not hand C their kinds, ids
    and certificate numbers: C holds no copy to leave out."""
    _, number = _moved_on_to_c(xstack)
    exchange_db = xstack.service("migrant_exchange").dsn
    settings = reconciliation_settings(
        xstack, reconciliation_buckets=BUCKETS, reconciliation_timeout_seconds=60
    )

    async def run() -> dict[str, set[tuple[str, str]]]:
        pool = await create_pool(exchange_db, min_size=1, max_size=3)
        registries = _NotingLeftOut(settings)
        try:
            for _ in range(2):  # the first sets it aside, the second asks to leave it out
                await reconciliation.reconcile(
                    pool, settings, registries, reconciliation.Reconcile(A, C, "request")
                )
            return registries.told
        finally:
            await registries.close()
            await pool.close()

    told = asyncio.run(run())
    assert ("certificate", number) in told[A]  # A issued it: left out of its digests
    assert told[C] == set()
