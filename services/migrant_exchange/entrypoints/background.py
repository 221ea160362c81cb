"""Every background task of the exchange: overdue escalation, re-sends, expired gaps and
scheduled reconciliation (with ``RUN_BACKGROUND``), and the operations centre's sampler (always:
every replica serves the stream)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.migrant_exchange.adapters import discrepancies as cases
from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.service_layer import handlers, messagebus, ordering, reconciliation
from services.migrant_exchange.service_layer.live_feed import LiveFeed
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import unit_of_work_on, wake_relay
from shared.observability import Duty

log = logging.getLogger(__name__)


async def _every(seconds: float, service: str, name: str, duty: Callable[[], Awaitable[object]]) -> None:
    """``duty`` every ``seconds``, through outages; each round counted by outcome (``Duty``)."""
    rounds = Duty(service, name)
    while True:
        await asyncio.sleep(seconds)
        try:
            with rounds.round():
                await duty()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # keep sweeping through outages
            log.warning("background duty failed", extra={"duty": name, "error": type(e).__name__})


def start(
    settings: ExchangeSettings, pool: asyncpg.Pool, registries: RegistryClient, feed: LiveFeed
) -> list[asyncio.Task[None]]:
    """Starts the tasks; the caller cancels them (``shared.shutdown.stop_tasks``)."""
    tasks = [
        asyncio.create_task(feed.run(), name="dashboard-feed"),
        asyncio.create_task(feed.run_group_lag(), name="dashboard-group-lag"),
    ]
    if settings.run_background:
        tasks += _duties(settings, pool, registries)
    return tasks


def _duties(
    settings: ExchangeSettings, pool: asyncpg.Pool, registries: RegistryClient
) -> list[asyncio.Task[None]]:
    # what waited behind a gap goes through the handler table; what it refuses, to the dead letters
    apply, refuse = messagebus.applier(settings), messagebus.refuser(settings)

    async def sweep() -> None:
        async with pool.acquire() as conn:
            async with unit_of_work_on(conn, wake=False):
                overdue = await repo.mark_overdue(conn)
                if overdue:
                    await cases.repairs_overdue(conn, [r["id"] for r in overdue])
                await repo.fold_overdue_count(conn)  # these and the late answers' changes
            if overdue:
                log.info("notifications overdue", extra={"count": len(overdue)})
            async with unit_of_work_on(conn, wake=False):
                resent = await handlers.resend_unanswered(conn, settings)
            async with unit_of_work_on(conn, wake=False):
                released = await ordering.release_expired_gaps(conn, apply, refuse)
            if resent or released:
                await wake_relay(conn)  # after the commits: new outbox rows wait for the relay

    async def reconcile_all() -> None:
        await reconciliation.run_scheduled(pool, settings, registries)

    service = settings.service_name
    tasks = [
        asyncio.create_task(_every(settings.overdue_sweep_interval, service, "sweep", sweep), name="sweep")
    ]
    if settings.reconciliation_interval_seconds > 0:
        tasks.append(
            asyncio.create_task(
                _every(settings.reconciliation_interval_seconds, service, "reconciliation", reconcile_all),
                name="scheduled-reconciliation",
            )
        )
    return tasks
