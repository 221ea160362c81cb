"""The printable certificate document: what the registrar prints and hands to the person."""

from __future__ import annotations

import asyncpg

from services.registry.adapters.certificate_pdf import PrintedCertificate, render
from services.registry.service_layer.certificates import printable_certificate
from services.registry.service_layer.context import Context
from shared.identity import division_name, mask


async def certificate_document(conn: asyncpg.Connection, ctx: Context, here: str, number: str) -> bytes:
    """An A5 PDF of a certificate of this jurisdiction, QR code included; the print is audited."""
    row = await printable_certificate(conn, ctx, here, number, "pdf")
    return render(
        PrintedCertificate(
            number=number,
            holder_name=row["holder_name"],
            holder_id_masked=mask(row["holder_id_number"]),
            marital_status=row["marital_status"],
            children_count=len(row["children_birth_dates"]),
            issuer_code=row["jurisdiction"],
            issuer_name=division_name(row["jurisdiction"]) or row["jurisdiction"],
            issued_on=row["issued_on"],
            valid_until=row["valid_until"],
            token=row["token"],
        )
    )
