"""What the registry's routers share: auth aliases, the write routes' one dependency (``Recorder``),
the use-case context, problem answers (``problems``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Path, Request, Security

from services.registry.domain.access import ensure_served
from services.registry.service_layer.context import Context
from services.registry.settings import RegistrySettings
from shared.app import UnitOfWork, service_state
from shared.auth import Client, admit, require
from shared.openapi import problems as problems  # the registry's routes declare their answers with it

WRITE = "persons:write"  # what every write requires today
Writer = Annotated[Client, require(WRITE)]
Reader = Annotated[Client, require("persons:read")]
PregnancyReader = Annotated[Client, require("pregnancy:read")]
Auditor = Annotated[Client, require("audit:read")]
TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"  # W3C trace context, version 00
TraceParent = Annotated[str | None, Header(pattern=TRACEPARENT)]
CertificateNumber = Annotated[
    str, Path(description="the certificate's number", examples=["320412-2026-ABCD2345"], max_length=40)
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="a retry with the same key and body returns the first answer and changes nothing",
        max_length=200,
    ),
]


def registry_settings(request: Request) -> RegistrySettings:
    """The registry's settings, as the shared lifespan stored them (typed)."""
    settings = service_state(request.app).settings
    assert isinstance(settings, RegistrySettings)
    return settings


Settings = Annotated[RegistrySettings, Depends(registry_settings)]


def ctx(request: Request, client: Client, traceparent: str | None = None) -> Context:
    return Context(registry_settings(request), traceparent, client.client_id)


def here(request: Request, client: Client) -> str:
    """The jurisdiction a writing client records for; it must be one this registry serves."""
    return ensure_served(client.jurisdiction, registry_settings(request).served)


@dataclass(frozen=True)
class Caller:
    """Who writes, before any transaction: the context (settings, caller, trace), the jurisdiction
    recorded for, and the writing client (whose scopes a batch item is checked against)."""

    ctx: Context
    here: str
    client: Client


async def caller(
    request: Request,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Caller:
    """Authenticates itself (``admit``), as ``Writer`` would, with one dependency less to resolve."""
    client = admit(request, WRITE)
    return Caller(ctx(request, client, traceparent), here(request, client), client)


# A write route's caller, the scope named in the OpenAPI document as ``require`` names it; alone,
# the dependency of a write route that opens its transaction only when it needs one (a move).
Writing = Annotated[Caller, Security(caller, scopes=[WRITE])]


@dataclass(frozen=True)
class WriteScope(Caller):
    """What a write route hands its use case: the ``Caller`` and the request's transaction
    (``UnitOfWork``, the ``Idempotency-Key`` middleware's when sent)."""

    conn: asyncpg.Connection


async def write_scope(who: Writing, conn: UnitOfWork) -> WriteScope:
    return WriteScope(who.ctx, who.here, who.client, conn)


# Every write route's one dependency: connection, caller, jurisdiction and trace together.
Recorder = Annotated[WriteScope, Depends(write_scope)]
