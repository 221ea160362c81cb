"""The registry's HTTP application: its routers (one per topic), consumers and startup checks."""

from __future__ import annotations

from fastapi import FastAPI

from services.registry.entrypoints.consumer import consumers
from services.registry.entrypoints.routes_batches import BATCHES
from services.registry.entrypoints.routes_batches import router as batch_router
from services.registry.entrypoints.routes_certificates import router as certificate_router
from services.registry.entrypoints.routes_keys import router as key_router
from services.registry.entrypoints.routes_reads import router as read_router
from services.registry.entrypoints.routes_reconciliation import router as reconciliation_router
from services.registry.entrypoints.routes_vital_events import router as vital_event_router
from services.registry.entrypoints.write_kinds import group_commit
from services.registry.settings import RegistrySettings
from shared import agreements
from shared.app import create_service_app


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()
    settings.require_signing_keys(set(settings.served))  # refuse to start unable to sign
    agreements.load(settings.agreements_file, settings.environment)  # refuse to start on a bad one
    return create_service_app(
        settings,
        title=f"Registry {settings.jurisdictions}",
        description="System of record for vital events and 婚育证明 certificates of its jurisdictions.",
        routers=[
            vital_event_router,
            batch_router,
            certificate_router,
            key_router,
            read_router,
            reconciliation_router,
        ],
        consumers=consumers,
        resources=group_commit,
        batch_paths=[BATCHES],
    )
