"""What the registry's routers share: auth aliases, the use-case context, problem answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Request
from pydantic import BaseModel, ConfigDict

from services.registry.domain.rules import ensure_served
from services.registry.service_layer.context import Context
from shared.auth import Client, require

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


class ProblemError(BaseModel):
    field: str | None
    rule: str | None
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details; ``errors`` names the field and the rule that was broken."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:migrant-exchange:problem:conflict",
                    "title": "The request conflicts with the current records",
                    "status": 409,
                    "detail": "spouse_a_id_number is already married",
                    "errors": [
                        {
                            "field": "spouse_a_id_number",
                            "rule": "one-active-marriage",
                            "message": "spouse_a_id_number is already married",
                        }
                    ],
                }
            ]
        },
    )
    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[ProblemError] | None = None


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem+json answers a route gives."""
    text = {
        401: "no valid bearer credential",
        403: "the client lacks the scope or serves another jurisdiction",
        404: "not found in the records the client may see",
        409: "conflicts with the current records (the rule is named)",
        422: "breaks a validation or registration rule (the field and rule are named)",
    }
    return {
        c: {"model": Problem, "description": text[c], "content": {"application/problem+json": {}}}
        for c in (401, 403, *codes)
    }


def ctx(request: Request, client: Client, traceparent: str | None = None) -> Context:
    return Context(request.app.state.settings, traceparent, client.client_id)


def here(request: Request, client: Client) -> str:
    """The jurisdiction a writing client records for; it must be one this registry serves."""
    return ensure_served(client.jurisdiction, request.app.state.settings.served)
