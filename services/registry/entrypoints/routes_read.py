"""Certificates, signing keys and reads of personal data."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from services.registry.entrypoints import schemas_read as s
from services.registry.entrypoints.routes_common import (
    Auditor,
    IdempotencyKey,
    PregnancyReader,
    Reader,
    TraceParent,
    Writer,
    ctx,
    here,
    problems,
)
from services.registry.entrypoints.schemas import Purpose
from services.registry.service_layer import handlers
from shared.app import UnitOfWork
from shared.errors import InvalidInput
from shared.identity import MAX_ID_NUMBER_INPUT, check_id_number

router = APIRouter(prefix="/v1")
Body = dict[str, object]
IdNumberPath = Annotated[
    str,
    Path(
        description="18-character resident identity number",
        examples=["11010119940517004X"],
        max_length=MAX_ID_NUMBER_INPUT,
    ),
]
CertificateNumber = Annotated[
    str, Path(description="the certificate's number", examples=["320412-2026-ABCD2345"], max_length=40)
]
PurposeQuery = Annotated[Purpose, Query(description="why the record is read (decides what is disclosed)")]


def _id_number(value: str) -> str:
    try:
        return check_id_number(value)
    except ValueError as e:
        raise InvalidInput(str(e), field="id_number", rule="gb11643") from None


@router.post(
    "/certificates",
    status_code=201,
    response_model=s.CertificateOut,
    summary="Issue a 婚育证明",
    tags=["registry: certificates"],
    responses=problems(404, 422),
)
async def issue_certificate(
    body: s.CertificateIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Issue a signed marriage-and-childbearing certificate; the token fits a QR code."""
    cert = await handlers.issue_certificate(
        conn, ctx(request, client, traceparent), here(request, client), body.model_dump()
    )
    return with_qr_paths(cert)


def with_qr_paths(cert: Body) -> Body:
    """An issued certificate as answered: with the paths of its QR images."""
    base = f"/v1/certificates/{cert['certificate_number']}"
    return {**cert, "qr_svg": f"{base}/qr.svg", "qr_png": f"{base}/qr.png"}


@router.post(
    "/certificates/{number}/revocation",
    response_model=s.RevocationOut,
    summary="Revoke a certificate",
    tags=["registry: certificates"],
    responses=problems(404, 409, 422),
)
async def revoke_certificate(
    number: CertificateNumber,
    body: s.RevocationIn,
    request: Request,
    conn: UnitOfWork,
    client: Writer,
    traceparent: TraceParent = None,
    idempotency_key: IdempotencyKey = None,
) -> Body:
    """Revoke a certificate of the client's jurisdiction; ``certificate.revoked.v1`` carries its status index."""
    return await handlers.revoke_certificate(
        conn, ctx(request, client, traceparent), here(request, client), number, body.model_dump()
    )


_IMAGE = {"svg": "image/svg+xml", "png": "image/png"}


def _qr_route(kind: str) -> None:
    @router.get(
        f"/certificates/{{number}}/qr.{kind}",
        summary=f"The certificate's QR code ({kind.upper()})",
        tags=["registry: certificates"],
        response_class=Response,
        responses={200: {"content": {_IMAGE[kind]: {}}, "description": "the QR image"}, **problems(404, 422)},
    )
    async def qr(number: CertificateNumber, request: Request, conn: UnitOfWork, client: Reader) -> Response:
        """The signed token as a QR image for printing on the certificate (the print is audited)."""
        image = await handlers.certificate_qr(conn, ctx(request, client), here(request, client), number, kind)
        return Response(image, media_type=_IMAGE[kind], headers={"Cache-Control": "no-store"})

    qr.__name__ = f"certificate_qr_{kind}"


_qr_route("svg")
_qr_route("png")


@router.get(
    "/keys", response_model=s.Jwks, summary="Certificate-signing keys (JWKS)", tags=["registry: certificates"]
)
async def keys(conn: UnitOfWork) -> Body:
    """Public Ed25519 keys of the jurisdictions served: active, and retired within their overlap window."""
    return await handlers.jwks(conn)


@router.post(
    "/keys/rotation",
    response_model=s.KeyRotationOut,
    summary="Rotate the jurisdiction's signing key",
    tags=["registry: certificates"],
    responses=problems(),
)
async def rotate_key(
    request: Request, conn: UnitOfWork, client: Writer, idempotency_key: IdempotencyKey = None
) -> Body:
    """A new key signs from now on; the old one stays published so issued certificates keep verifying."""
    return await handlers.rotate_key(conn, ctx(request, client), here(request, client))


@router.get(
    "/persons/{id_number}",
    response_model=s.PersonRecord,
    response_model_exclude_none=True,
    summary="Read a person's record",
    tags=["registry: reads"],
    responses=problems(404, 422),
)
async def read_person(
    id_number: IdNumberPath, purpose: PurposeQuery, request: Request, conn: UnitOfWork, client: Reader
) -> Body:
    """The record for a purpose: the client's own residents, or migrants shared with it; audited."""
    return await handlers.read_person(conn, ctx(request, client), client, _id_number(id_number), purpose)


@router.get(
    "/persons/{id_number}/disclosures",
    response_model=s.Disclosures,
    summary="Subject-access log",
    tags=["registry: reads"],
    responses=problems(404, 422),
)
async def read_disclosures(
    id_number: IdNumberPath,
    request: Request,
    conn: UnitOfWork,
    client: Auditor,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Body:
    """Who received or read this person's data, newest first (from the hash-chained audit log)."""
    return await handlers.read_disclosures(conn, ctx(request, client), client, _id_number(id_number), limit)


@router.get(
    "/pregnancies/{pregnancy_id}",
    response_model=s.PregnancyRecord,
    summary="Read a pregnancy record",
    tags=["registry: reads"],
    responses=problems(404, 422),
)
async def read_pregnancy(
    pregnancy_id: uuid.UUID,
    purpose: PurposeQuery,
    request: Request,
    conn: UnitOfWork,
    client: PregnancyReader,
) -> Body:
    """Only for the mother's own origin and destination registries, for care and registration."""
    return await handlers.read_pregnancy(conn, ctx(request, client), client, pregnancy_id, purpose)
