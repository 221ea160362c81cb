"""HTTP routes of the verification service: verifications, keys, status lists, the audit check
(the app: ``entrypoints/app.py``; the kiosk's routes: ``entrypoints/kiosk.py``)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.verification.domain import status_list as tsl
from services.verification.domain.verdict import Purpose, Result, TokenResult
from services.verification.entrypoints.deps import Verifier, verifier
from services.verification.entrypoints.state import verification_state
from services.verification.service_layer import publication, verifications
from services.verification.service_layer.verifications import Verification, VerifyCertificate, VerifyToken
from shared import audit
from shared.app import Pool
from shared.auth import CurrentClient
from shared.errors import Forbidden, NotFound
from shared.identity import DivisionCode, IdNumber, subject_key
from shared.openapi import problems, secured

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["verification"])


def _subject(request: Request, id_number: str) -> str:
    return subject_key(id_number, verification_state(request).subject_secret)


class VerificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    certificate_number: str = Field(min_length=1, max_length=40, examples=["320412-2026-ABCDEFGH"])
    holder_id_number: IdNumber
    purpose: Purpose


_In = TypeVar("_In", bound=BaseModel)


class VerificationOut(BaseModel):
    certificate_number: str
    result: Result
    issuer: str | None
    attributes: dict[str, Any] = Field(description="only what the purpose allows; never pregnancy data")
    checked_at: dt.datetime


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    token: str = Field(min_length=10, max_length=4096, description="the compact JWS printed in the QR code")
    purpose: Purpose
    holder_id_number: IdNumber | None = Field(default=None, description="checked against the token's holder")


class TokenOut(BaseModel):
    certificate_number: str | None
    result: TokenResult
    issuer: str | None
    attributes: dict[str, Any]
    checked_at: dt.datetime


def _json(body: Verification) -> Response:
    # The handlers build exactly the documented shape; skipping FastAPI's re-validation of it
    # is a measurable share of the hot path.
    return Response(orjson.dumps(body), media_type="application/json")


async def _body(request: Request, model: type[_In]) -> _In:
    """The request body parsed by pydantic's own JSON parser (FastAPI would decode it with the
    standard library first, then validate the objects), with FastAPI's validation errors."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in e.errors(include_url=False)]
        ) from None


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses its body itself (see ``_body``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/verifications",
    response_model=VerificationOut,
    summary="Verify a certificate for its holder",
    openapi_extra={**_documented_body(VerificationIn), **secured("verify")},
    responses=problems(429, 503),
)
async def verify(request: Request) -> Response:
    """Is this certificate genuine, in force, and held by this person? Discloses the minimum."""
    # The hot path solves no FastAPI dependency at all (each one costs a measurable share of a
    # verification): the client and the body are taken here directly.
    client = await verifier(request)
    body = await _body(request, VerificationIn)
    command = VerifyCertificate(
        body.certificate_number, _subject(request, body.holder_id_number), body.purpose
    )
    answer = await verifications.verify_certificate(verification_state(request).audit_writer, client, command)
    return _json(answer)


@router.post(
    "/verifications/token",
    response_model=TokenOut,
    summary="Verify a signed QR token",
    responses=problems(429, 503),
)
async def verify_token(body: TokenIn, request: Request, client: Verifier) -> Response:
    """Check the QR payload against the issuer's published keys and the revocation state."""
    subject = _subject(request, body.holder_id_number) if body.holder_id_number else None
    state = verification_state(request)
    refresher = state.key_refresher
    answer = await verifications.verify_token(
        state.pool,
        state.audit_writer,
        client,
        VerifyToken(body.token, subject, body.purpose),
        refresh_keys=(lambda: refresher.refresh(urgent=True)) if refresher else None,
    )
    return _json(answer)


@router.get("/keys", summary="Every issuer's current and previous public keys (JWKS)")
async def keys(request: Request, pool: Pool) -> JSONResponse:
    """Public keys for offline kiosks; includes the key that signs status lists."""
    body = await publication.jwks(pool, verification_state(request).signer)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/status-lists/{issuer}",
    summary="Signed revocation status list of one issuer",
    responses={
        **problems(404),
        200: {
            "description": "JSON (default, the transition form) or, on `Accept: application/statuslist+jwt`, "
            "an IETF Token Status List token",
            "content": {"application/json": {}, tsl.MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
    },
)
async def status_list(issuer: DivisionCode, request: Request, pool: Pool) -> Response:
    """The issuer's revocations, negotiated on ``Accept``: an IETF Token Status List token
    (``application/statuslist+jwt``, the standard form certificates reference), or the W3C
    Bitstring Status List credential in a detached-JWS envelope of ours (the default, kept
    during the transition)."""
    from services.verification.adapters import repository as repo

    if issuer not in await repo.known_issuers(pool):
        raise NotFound(
            "no certificates or keys of this issuer are known", field="issuer", rule="known-issuer"
        )
    state = verification_state(request)
    settings = state.settings
    headers = {"Cache-Control": "public, max-age=60", "Vary": "Accept"}
    if tsl.MEDIA_TYPE in request.headers.get("accept", ""):
        base = settings.public_url.rstrip("/") if settings.public_url else str(request.base_url).rstrip("/")
        token = await publication.status_list_token(
            pool,
            issuer,
            state.signer,
            uri=f"{base}/v1/status-lists/{issuer}",
            validity=settings.status_list_validity_seconds,
            ttl=settings.status_list_ttl_seconds,
        )
        return Response(token, media_type=tsl.MEDIA_TYPE, headers=headers)
    body = await publication.status_list(pool, issuer, state.signer, settings.status_list_validity_seconds)
    return JSONResponse(body, headers=headers)


@router.get("/audit/verify", summary="Check the audit chain and name the first broken row")
async def audit_verify(pool: Pool, client: CurrentClient) -> dict[str, Any]:
    """Recompute the hash chain of the audit log; ``first_broken_seq`` is null when it is intact.

    ``pending`` counts entries already durable but not yet chained (normally chained within
    a fraction of a second)."""
    if not (client.has("audit:read") or client.has("ops:read")):
        raise Forbidden("this client lacks the 'audit:read' or 'ops:read' scope", rule="scope")
    async with pool.acquire() as conn:
        broken = await audit.verify_chain(conn)
        rows = await conn.fetchval("SELECT count(*) FROM audit_log")
        pending = await conn.fetchval("SELECT count(*) FROM audit_pending")
    return {"intact": broken is None, "first_broken_seq": broken, "rows": rows, "pending": pending}
