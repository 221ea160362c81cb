"""Background duties of the exchange: overdue escalation, re-sends, expired gaps, scheduled reconciliation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from services.migrant_exchange.adapters import discrepancies as cases
from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.service_layer import handlers, messagebus, ordering, reconciliation
from services.migrant_exchange.settings import ExchangeSettings
from shared.outbox import wake_relay

log = logging.getLogger(__name__)


async def _every(seconds: float, name: str, duty: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await duty()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # keep sweeping through outages
            log.warning("background duty failed", extra={"duty": name, "error": type(e).__name__})


def start(app: FastAPI) -> list[asyncio.Task[None]]:
    settings: ExchangeSettings = app.state.settings
    pool = app.state.pool
    apply = messagebus.applier(settings)  # what waited behind a gap goes through the handler table

    async def sweep() -> None:
        async with pool.acquire() as conn:
            async with conn.transaction():
                overdue = await repo.mark_overdue(conn)
                if overdue:
                    await cases.repairs_overdue(conn, [r["id"] for r in overdue])
            if overdue:
                log.info("notifications overdue", extra={"count": len(overdue)})
            async with conn.transaction():
                resent = await handlers.resend_unanswered(conn, settings)
            async with conn.transaction():
                released = await ordering.release_expired_gaps(conn, apply)
            if resent or released:
                await wake_relay(conn)  # after the commits: new outbox rows wait for the relay

    async def reconcile_all() -> None:
        await reconciliation.run_scheduled(pool, settings, app.state.registries)

    tasks = [asyncio.create_task(_every(settings.overdue_sweep_interval, "sweep", sweep), name="sweep")]
    if settings.reconciliation_interval_seconds > 0:
        tasks.append(
            asyncio.create_task(
                _every(settings.reconciliation_interval_seconds, "reconciliation", reconcile_all),
                name="scheduled-reconciliation",
            )
        )
    return tasks
