"""Two runs of one pair at once both remember what they set aside (three registries on the real
broker, over HTTP).

A scheduled round holds an advisory lock against other rounds, but an operator's run of a pair
(``POST /v1/reconciliations``) takes none: it may run beside the round's run of the same pair. Both
judge the same records set aside (``domain/reconcile.py`` ``set_aside``) and write them to
``reconciliation_set_aside``; the one writing second must not fail on the rows the first wrote.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from devstack.credentials import EXCHANGE_SERVICE
from devstack.stack import Stack
from services.migrant_exchange.adapters import reconciliations as runs
from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.service_layer import reconciliation
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import create_pool
from tests.exchange.exchange_helpers import A, C
from tests.exchange.test_reconciliation_held_records import BUCKETS, _moved_on_to_c
from tests.helpers import lock_waiters, query

pytestmark = pytest.mark.e2e


def test_a_run_beside_another_of_its_pair_keeps_what_both_set_aside(xstack: Stack) -> None:
    _, number = _moved_on_to_c(xstack)  # A's certificate, sent to B alone: set aside for A-C
    exchange_db = xstack.service("migrant_exchange").dsn
    urls = ",".join(
        f"{s.jurisdictions[0]}={s.url}" for s in xstack.services if s.module == "services.registry"
    )
    settings = ExchangeSettings(
        database_url=exchange_db,
        registry_urls=urls,
        registry_token=xstack.token(EXCHANGE_SERVICE),
        reconciliation_buckets=BUCKETS,
        reconciliation_timeout_seconds=60,
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
