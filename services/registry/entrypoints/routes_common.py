"""What the registry's routers share: auth aliases, the write routes' one dependency (``Recorder``),
the use-case context, problem answers (``problems``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, Request

from services.registry.domain.access import ensure_served
from services.registry.service_layer.context import Context
from shared.app import UnitOfWork
from shared.auth import Client, require
from shared.openapi import problems as problems  # the registry's routes declare their answers with it

Writer = Annotated[Client, require("persons:write")]
Reader = Annotated[Client, require("persons:read")]
PregnancyReader = Annotated[Client, require("pregnancy:read")]
Auditor = Annotated[Client, require("audit:read")]
TraceParent = Annotated[str | None, Header(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="a retry with the same key and body returns the first answer and changes nothing",
        max_length=200,
    ),
]


def ctx(request: Request, client: Client, traceparent: str | None = None) -> Context:
    return Context(request.app.state.settings, traceparent, client.client_id)


def here(request: Request, client: Client) -> str:
    """The jurisdiction a writing client records for; it must be one this registry serves."""
    return ensure_served(client.jurisdiction, request.app.state.settings.served)


@dataclass(frozen=True)
class WriteScope:
    """What a write route hands its use case: the request's transaction (``UnitOfWork``, the
    ``Idempotency-Key`` middleware's when sent), the context (settings, caller, trace), the
    jurisdiction recorded for, and the writing client (whose scopes a batch item is checked against)."""

    conn: asyncpg.Connection
    ctx: Context
    here: str
    client: Client


async def write_scope(
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> WriteScope:
    return WriteScope(conn, ctx(request, client, traceparent), here(request, client), client)


# Every write route's one dependency: connection, caller, jurisdiction and trace together.
Recorder = Annotated[WriteScope, Depends(write_scope)]
