"""The certificate routes: issue and revoke a 婚育证明, print its QR code and its A5 PDF."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from services.registry.domain.certificates import CertificateIssued, CertificateRevoked
from services.registry.entrypoints import schemas_certificates as s
from services.registry.entrypoints.routes_common import Reader, Recorder, ctx, here, problems
from services.registry.service_layer import certificates
from services.registry.service_layer.documents import certificate_document
from shared.app import UnitOfWork

router = APIRouter(prefix="/v1")
CertificateNumber = Annotated[
    str, Path(description="the certificate's number", examples=["320412-2026-ABCD2345"], max_length=40)
]


@router.post(
    "/certificates",
    status_code=201,
    response_model=s.CertificateOut,
    summary="Issue a 婚育证明",
    tags=["registry: certificates"],
    responses=problems(404, 422),
)
async def issue_certificate(body: s.CertificateIn, rec: Recorder) -> CertificateIssued:
    """Issue a signed marriage-and-childbearing certificate; the token fits a QR code."""
    return await certificates.issue_certificate(rec.conn, rec.ctx, rec.here, body)


@router.post(
    "/certificates/{number}/revocation",
    response_model=s.RevocationOut,
    summary="Revoke a certificate",
    tags=["registry: certificates"],
    responses=problems(404, 409, 422),
)
async def revoke_certificate(
    number: CertificateNumber, body: s.RevocationIn, rec: Recorder
) -> CertificateRevoked:
    """Revoke a certificate of the client's jurisdiction; ``certificate.revoked.v1`` carries its status index."""
    return await certificates.revoke_certificate(rec.conn, rec.ctx, rec.here, number, body)


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
        image = await certificates.certificate_qr(
            conn, ctx(request, client), here(request, client), number, kind
        )
        return Response(image, media_type=_IMAGE[kind], headers={"Cache-Control": "no-store"})

    qr.__name__ = f"certificate_qr_{kind}"


_qr_route("svg")
_qr_route("png")


@router.get(
    "/certificates/{number}/document",
    summary="The certificate as a printable A5 PDF",
    tags=["registry: certificates"],
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "one A5 page in Chinese, with the QR"},
        **problems(404, 422),
    },
)
async def certificate_pdf(
    number: CertificateNumber, request: Request, conn: UnitOfWork, client: Reader
) -> Response:
    """The 婚育证明 to print and hand to the holder: name, the minimal fields, issuer, dates and
    the signed QR code (the print is audited)."""
    pdf = await certificate_document(conn, ctx(request, client), here(request, client), number)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'inline; filename="certificate-{number}.pdf"',
        },
    )
