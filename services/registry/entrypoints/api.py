"""HTTP entry point of the registry: routes are thin, use cases live in the service layer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Query, Request

from services.registry.entrypoints import schemas as s
from services.registry.entrypoints.consumer import consumers
from services.registry.entrypoints.reconciliation import router as reconciliation_router
from services.registry.service_layer import handlers
from services.registry.settings import RegistrySettings
from shared.app import UnitOfWork, create_service_app
from shared.auth import Client, require

router = APIRouter(prefix="/v1", tags=["registry"])
Writer = Annotated[Client, require("persons:write")]
Reader = Annotated[Client, require("persons:read")]
TraceParent = Annotated[str | None, Header(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")]


def _ctx(request: Request, traceparent: str | None = None) -> handlers.Context:
    return handlers.Context(request.app.state.settings, traceparent)


def _here(request: Request, client: Client) -> str:
    from services.registry.domain.rules import ensure_served

    return ensure_served(client.jurisdiction, request.app.state.settings.served)


@router.post("/persons", status_code=201, response_model=s.PersonOut, summary="Register a person")
async def register_person(
    body: s.PersonIn, request: Request, conn: UnitOfWork, client: Writer, traceparent: TraceParent = None
) -> dict[str, object]:
    """Record a person in the client's jurisdiction; publishes ``person.registered.v1``."""
    return await handlers.register_person(
        conn, _ctx(request, traceparent), _here(request, client), body.model_dump()
    )


@router.post("/migrations", status_code=201, response_model=s.MigrationOut, summary="Record a move")
async def record_migration(
    body: s.MigrationIn, request: Request, conn: UnitOfWork, client: Writer, traceparent: TraceParent = None
) -> dict[str, object]:
    """Record a departure (at the place left), an arrival or a return (at the place arrived at)."""
    return await handlers.record_migration(
        conn, _ctx(request, traceparent), _here(request, client), body.model_dump()
    )


@router.post("/births", status_code=201, response_model=s.BirthOut, summary="Register a birth")
async def register_birth(
    body: s.BirthIn, request: Request, conn: UnitOfWork, client: Writer, traceparent: TraceParent = None
) -> dict[str, object]:
    """Record a birth, one per birth medical certificate; publishes ``birth.registered.v1``."""
    return await handlers.register_birth(
        conn, _ctx(request, traceparent), _here(request, client), body.model_dump()
    )


@router.post("/certificates", status_code=201, response_model=s.CertificateOut, summary="Issue a 婚育证明")
async def issue_certificate(
    body: s.CertificateIn, request: Request, conn: UnitOfWork, client: Writer, traceparent: TraceParent = None
) -> dict[str, object]:
    """Issue a signed marriage-and-childbearing certificate for a person of the client's jurisdiction."""
    return await handlers.issue_certificate(
        conn, _ctx(request, traceparent), _here(request, client), body.model_dump()
    )


@router.get("/persons/{id_number}", response_model=s.PersonRecord, summary="Read a person's record")
async def read_person(
    id_number: str,
    request: Request,
    conn: UnitOfWork,
    client: Reader,
    purpose: Annotated[s.Purpose, Query(description="why the record is read")],
) -> dict[str, object]:
    """The record as the client's jurisdiction holds it; the read is written to the disclosure log."""
    from shared.errors import InvalidInput
    from shared.identity import check_id_number

    try:
        number = check_id_number(id_number)
    except ValueError as e:
        raise InvalidInput(str(e), field="id_number", rule="gb11643") from None
    return await handlers.read_person(conn, _ctx(request), client, number, purpose)


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    settings = settings or RegistrySettings()
    return create_service_app(
        settings,
        title=f"Registry {settings.jurisdictions}",
        description="System of record for vital events and 婚育证明 certificates of its jurisdictions.",
        routers=[router, reconciliation_router],
        consumers=consumers,
    )
