"""The printable certificate (A5 PDF)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.registry.entrypoints.routes_common import Reader, ctx, here, problems
from services.registry.entrypoints.routes_read import CertificateNumber
from services.registry.service_layer.documents import certificate_document
from shared.app import UnitOfWork

router = APIRouter(prefix="/v1")


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
