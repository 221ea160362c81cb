"""The certificate routes: issue and revoke a 婚育证明 (rows of ``write_kinds.py``), print its QR
code and its A5 PDF."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.registry.entrypoints.routes_common import CertificateNumber, Reader, ctx, here, problems
from services.registry.entrypoints.write_kinds import CERTIFICATES, add_routes
from services.registry.service_layer import certificates
from services.registry.service_layer.documents import certificate_document
from shared.app import UnitOfWork

router = APIRouter(prefix="/v1", tags=[CERTIFICATES])
add_routes(router, CERTIFICATES)  # issue and revoke: write_kinds.py


_IMAGE = {"svg": "image/svg+xml", "png": "image/png"}


def _qr_route(kind: str) -> None:
    @router.get(
        f"/certificates/{{number}}/qr.{kind}",
        summary=f"The certificate's QR code ({kind.upper()})",
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
