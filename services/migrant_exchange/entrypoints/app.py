"""The exchange's one place for start-up: ``create_app`` composes the routers, the consumers
(``entrypoints/consumer.py``), the background tasks (``entrypoints/background.py``) and the typed
state (``entrypoints/state.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.migrant_exchange.adapters import retention
from services.migrant_exchange.adapters.group_lag import GroupLag
from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.entrypoints import background, dashboard, reconciliation
from services.migrant_exchange.entrypoints.api import router
from services.migrant_exchange.entrypoints.consumer import consumers
from services.migrant_exchange.entrypoints.state import ExchangeState
from services.migrant_exchange.service_layer.agreements import configured, load_agreements
from services.migrant_exchange.service_layer.live_feed import LiveFeed
from services.migrant_exchange.settings import ExchangeSettings
from shared.app import ServiceState, create_service_app
from shared.shutdown import stop_tasks
from shared.trust import EXCHANGE


def create_app(settings: ExchangeSettings | None = None) -> FastAPI:
    settings = settings or ExchangeSettings()
    settings.require_signing_keys({EXCHANGE})  # refuse to start unable to sign
    configured(settings)  # refuse to start on an agreement it would misapply (AgreementError names it)

    @asynccontextmanager
    async def resources(core: ServiceState) -> AsyncIterator[ExchangeState]:
        async with core.pool.acquire() as conn:
            await load_agreements(conn, settings)
        registries = RegistryClient(settings)
        group_lag = GroupLag(settings, stall_seconds=settings.consumer_stall_seconds)
        feed = LiveFeed(core.pool, settings, group_lag)
        tasks = background.start(settings, core.pool, registries, feed)
        try:
            yield ExchangeState(settings, core.pool, registries, feed, tasks)
        finally:
            await stop_tasks(tasks)
            await group_lag.close()
            await registries.close()

    return create_service_app(
        settings,
        title="Migrant exchange",
        description="Routes vital events between origin and destination, tracks feedback, reconciles, reports.",
        routers=[router, reconciliation.router, dashboard.router],
        consumers=consumers,
        resources=resources,
        purges=retention.purges(settings),
    )
