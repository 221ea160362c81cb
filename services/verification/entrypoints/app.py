"""Verification's one place for start-up: ``create_app`` composes the routers, the consumer
(``entrypoints/consumer.py``), the background tasks (``entrypoints/background.py``) and the typed
state (``entrypoints/state.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.verification.adapters import retention
from services.verification.adapters.audit_writer import AuditWriter
from services.verification.adapters.keys import load_signer
from services.verification.domain.rate_limit import TokenBuckets
from services.verification.entrypoints import background
from services.verification.entrypoints.api import router
from services.verification.entrypoints.consumer import consumers
from services.verification.entrypoints.kiosk import kiosk_router, offline_router
from services.verification.entrypoints.state import VerificationState
from services.verification.settings import VerificationSettings
from shared import signing
from shared.app import ServiceState, create_service_app
from shared.shutdown import stop_tasks
from shared.trust import VERIFICATION


def create_app(settings: VerificationSettings | None = None) -> FastAPI:
    settings = settings or VerificationSettings()
    settings.require_signing_keys({VERIFICATION})  # its disclosure events must go out signed
    return create_service_app(
        settings,
        title="Certificate verification",
        description="Online and offline verification of 婚育证明 certificates, with minimal disclosure.",
        routers=[router, offline_router, kiosk_router],
        consumers=consumers,
        resources=lambda core: _resources(core, settings),
        purges=retention.purges(settings),
    )


@asynccontextmanager
async def _resources(core: ServiceState, settings: VerificationSettings) -> AsyncIterator[VerificationState]:
    configured = settings.status_list_signing_key
    signer = await load_signer(
        core.pool, signing.b64u_decode(configured.get_secret_value()) if configured else None
    )
    audit_writer = AuditWriter(
        core.pool,
        flush_interval=settings.audit_flush_interval,
        max_batch=settings.audit_batch_max,
        chain_interval=settings.audit_chain_interval,
        concurrent_flushes=settings.audit_concurrent_flushes,
        service=settings.service_name,
    )
    audit_writer.start()
    refresher = background.KeyRefresher(core.pool, settings) if settings.key_urls else None
    tasks = background.start(refresher)
    try:
        yield VerificationState(
            settings=settings,
            pool=core.pool,
            subject_secret=settings.subject_key_secret.get_secret_value().encode(),
            buckets=TokenBuckets(settings.rate_limit_per_minute / 60.0, settings.rate_limit_burst),
            signer=signer,
            audit_writer=audit_writer,
            key_refresher=refresher,
            tasks=tasks,
        )
    finally:
        await stop_tasks(tasks)
        if refresher is not None:
            await refresher.close()
        await audit_writer.stop()
