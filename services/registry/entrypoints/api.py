"""HTTP entry point of the registry: routes are thin, use cases live in the service layer."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, FastAPI, Request

from services.registry.entrypoints import schemas as s
from services.registry.entrypoints.consumer import consumers
from services.registry.entrypoints.reconciliation import router as reconciliation_router
from services.registry.entrypoints.routes_batches import router as batch_router
from services.registry.entrypoints.routes_common import (
    IdempotencyKey,
    TraceParent,
    Writer,
    ctx,
    here,
    problems,
)
from services.registry.entrypoints.routes_document import router as document_router
from services.registry.entrypoints.routes_read import router as read_router
from services.registry.service_layer import handlers
from services.registry.settings import RegistrySettings
from shared import agreements
from shared.app import UnitOfWork, create_service_app

router = APIRouter(prefix="/v1", tags=["registry: vital events"])
Body = dict[str, object]


@router.post(
    "/persons",
    status_code=201,
    response_model=s.PersonOut,
    summary="Register a person",
    responses=problems(409, 422),
)
async def register_person(
    body: s.PersonIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Record a person in the client's jurisdiction; publishes ``person.registered.v1``."""
    return await handlers.register_person(
        conn, ctx(request, client, traceparent), here(request, client), body.model_dump()
    )


@router.post(
    "/marriages",
    status_code=201,
    response_model=s.MarriageOut,
    summary="Register a marriage",
    responses=problems(409, 422),
)
async def register_marriage(
    body: s.MarriageIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Record a marriage of two persons on record, neither already married; ``marriage.registered.v1``."""
    return await handlers.register_marriage(
        conn, ctx(request, client, traceparent), here(request, client), body.model_dump()
    )


@router.post(
    "/marriages/{marriage_id}/dissolution",
    response_model=s.MarriageOut,
    summary="Record the end of a marriage",
    responses=problems(404, 409, 422),
)
async def dissolve_marriage(
    marriage_id: uuid.UUID,
    body: s.DissolutionIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Divorce, death or annulment; publishes ``marriage.dissolved.v1``."""
    return await handlers.dissolve_marriage(
        conn, ctx(request, client, traceparent), here(request, client), marriage_id, body.model_dump()
    )


@router.post(
    "/migrations",
    status_code=201,
    response_model=s.MigrationOut,
    summary="Record a move",
    responses=problems(409, 422),
)
async def record_migration(
    body: s.MigrationIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Record a departure (at the place left), an arrival or a return (at the place arrived at)."""
    return await handlers.record_migration(
        conn, ctx(request, client, traceparent), here(request, client), body.model_dump()
    )


@router.post(
    "/pregnancies",
    status_code=201,
    response_model=s.PregnancyOut,
    summary="Register a pregnancy",
    responses=problems(409, 422),
)
async def register_pregnancy(
    body: s.PregnancyIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Record a pregnancy for maternal care; only the mother's origin and destination hear of it."""
    return await handlers.register_pregnancy(
        conn, ctx(request, client, traceparent), here(request, client), body.model_dump()
    )


@router.post(
    "/pregnancies/{pregnancy_id}/closure",
    response_model=s.PregnancyOut,
    summary="Close a pregnancy record",
    responses=problems(404, 409, 422),
)
async def close_pregnancy(
    pregnancy_id: uuid.UUID,
    body: s.ClosureIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Close the record when the pregnancy ends; publishes ``pregnancy.closed.v1``."""
    return await handlers.close_pregnancy(
        conn, ctx(request, client, traceparent), here(request, client), pregnancy_id, body.model_dump()
    )


@router.post(
    "/births",
    status_code=201,
    response_model=s.BirthOut,
    summary="Register a birth",
    responses=problems(409, 422),
)
async def register_birth(
    body: s.BirthIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Record a birth, one per birth medical certificate; publishes ``birth.registered.v2``."""
    return await handlers.register_birth(
        conn, ctx(request, client, traceparent), here(request, client), body.model_dump()
    )


@router.post(
    "/corrections",
    status_code=201,
    response_model=s.CorrectionOut,
    summary="Correct a record",
    responses=problems(404, 409, 422),
)
async def record_correction(
    body: s.CorrectionIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Correct fields of a record, naming the event corrected and why; ``record.corrected.v1``."""
    return await handlers.record_correction(
        conn, ctx(request, client, traceparent), here(request, client), body.model_dump()
    )


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()
    settings.require_signing_keys(set(settings.served))  # refuse to start unable to sign
    agreements.load(settings.agreements_file, settings.environment)  # refuse to start on a bad one
    return create_service_app(
        settings,
        title=f"Registry {settings.jurisdictions}",
        description="System of record for vital events and 婚育证明 certificates of its jurisdictions.",
        routers=[router, batch_router, read_router, document_router, reconciliation_router],
        consumers=consumers,
    )
