"""What the registry's routers share: auth aliases, the use-case context, problem answers (``problems``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Request

from services.registry.domain.rules import ensure_served
from services.registry.service_layer.context import Context
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
