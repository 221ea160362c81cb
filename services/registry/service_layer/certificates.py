"""The marriage-and-childbearing certificate (婚育证明): issue, revoke, print its QR code; and the
copies of certificates counterparts issued to people we share with them."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import asyncpg
import segno

from services.registry.adapters import births, keys, marriages, persons
from services.registry.adapters import certificates as repo
from services.registry.domain.certificates import (
    CertificateIssued,
    CertificateRevoked,
    IssueCertificate,
    RevokeCertificate,
    certificate_claims,
    certificate_number,
)
from services.registry.domain.conflicts import field_conflicts
from services.registry.service_layer.context import (
    Context,
    Outcome,
    Target,
    announce_about,
    applied,
)
from services.registry.service_layer.disclosures import tell_read
from services.registry.service_layer.persons import known_person
from shared import audit, signing
from shared.errors import Conflict, NotFound, RuleViolation
from shared.events import payloads as p
from shared.events.envelope import new_event_id

PRINTED = "certificate.printed"  # the action of a print in the audit log
PRINT_PURPOSE = "certificate_issuance"


def _kek(ctx: Context) -> str:
    return ctx.settings.key_encryption_key.get_secret_value()


async def issue_certificate(
    conn: asyncpg.Connection, ctx: Context, here: str, body: IssueCertificate
) -> CertificateIssued:
    """Issue a signed marriage-and-childbearing certificate (婚育证明) for a person of this register."""
    holder = body.holder_id_number
    person = await known_person(conn, here, holder, "holder_id_number")
    today = dt.date.today()
    kid, key = await keys.active_key(conn, here, _kek(ctx), ctx.settings.key_rotation_overlap_days)
    cert: dict[str, Any] = {
        "certificate_number": certificate_number(here, today),
        "holder_id_number": holder,
        "holder_name": person["name"],
        "marital_status": await marriages.marital_status(conn, here, holder),
        "children_birth_dates": await births.children_birth_dates(conn, here, holder),
        "issuer": here,
        "issued_on": today,
        "valid_until": today + dt.timedelta(days=body.valid_days or ctx.settings.certificate_validity_days),
        "key_id": kid,
        "status_index": await repo.next_status_index(conn, here),
    }
    status_uri = f"{ctx.settings.status_list_base_url.rstrip('/')}/{here}"
    cert["token"] = signing.sign(certificate_claims(cert, ctx.subject(holder), status_uri), key, kid)
    event_id = new_event_id()
    await repo.insert_certificate(conn, here, cert, event_id)
    event = await announce_about(
        conn, ctx, here, person, "certificate.issued.v1", p.CertificateIssuedV1(**cert), event_id
    )
    qr = f"/v1/certificates/{cert['certificate_number']}/qr"  # the routes that print it (audited)
    return CertificateIssued.model_validate(
        {
            **cert,
            "children_count": len(cert["children_birth_dates"]),
            "qr_svg": f"{qr}.svg",
            "qr_png": f"{qr}.png",
            "event_id": event.id,
        }
    )


async def own_certificate(conn: asyncpg.Connection, here: str, number: str, lock: bool = False) -> Any:
    row = await repo.get_certificate(conn, number, lock=lock)
    if row is None or row["jurisdiction"] != here:
        raise NotFound(
            "no such certificate issued by the client's jurisdiction",
            field="certificate_number",
            rule="exists",
        )
    return row


async def revoke_certificate(
    conn: asyncpg.Connection, ctx: Context, here: str, number: str, body: RevokeCertificate
) -> CertificateRevoked:
    """Revoke a certificate; ``certificate.revoked.v1`` carries its status-list index."""
    row = await own_certificate(conn, here, number, lock=True)
    if row["revoked_on"] is not None:
        raise Conflict(
            "the certificate is already revoked", field="certificate_number", rule="already-revoked"
        )
    revoked_on = dt.date.today()
    event_id = new_event_id()
    await repo.revoke_certificate(conn, number, revoked_on, body.reason, event_id)
    person = await known_person(conn, here, row["holder_id_number"], "holder_id_number")
    event = await announce_about(
        conn,
        ctx,
        here,
        person,
        "certificate.revoked.v1",
        p.CertificateRevokedV1(
            certificate_number=number,
            issuer=here,
            revoked_on=revoked_on,
            reason=body.reason,
            status_index=row["status_index"],
        ),
        event_id,
    )
    return CertificateRevoked.model_validate(
        {
            "certificate_number": number,
            "issuer": here,
            "revoked_on": revoked_on,
            "reason": body.reason,
            "status_index": row["status_index"],
            "event_id": event.id,
        }
    )


async def printable_certificate(
    conn: asyncpg.Connection, ctx: Context, here: str, number: str, kind: str
) -> asyncpg.Record:
    """A certificate of this jurisdiction about to be printed (as ``kind``: svg, png, pdf): refused
    if revoked, and the print audited (who printed whose certificate, for what) and told to the
    holder's other registry as any read of her data here is (``tell_read``): a print discloses her
    name, marital status and children (the QR code's signed claims too)."""
    row = await own_certificate(conn, here, number)
    if row["revoked_on"] is not None:
        raise RuleViolation(
            "a revoked certificate is not printed", field="certificate_number", rule="not-revoked"
        )
    await audit.append(
        conn,
        [
            audit.AuditEntry(
                ctx.client_id,
                PRINTED,
                PRINT_PURPOSE,
                ctx.subject(row["holder_id_number"]),
                {"certificate_number": number, "format": kind},
            )
        ],
    )
    holder = await persons.get_person(conn, here, row["holder_id_number"])
    if holder is not None:  # issued only to a person on record here
        await tell_read(
            conn,
            ctx.settings,
            holder,
            PRINT_PURPOSE,
            reader=ctx.client_id,
            reader_division=here,  # the printing client is this jurisdiction's
            certificate_number=number,
            issuer=here,
        )
    return row


async def certificate_qr(conn: asyncpg.Connection, ctx: Context, here: str, number: str, kind: str) -> bytes:
    """The certificate's token as a QR image (SVG or PNG) for printing; the print is audited."""
    row = await printable_certificate(conn, ctx, here, number, kind)
    qr = segno.make(row["token"], error="m", micro=False)
    out = io.BytesIO()
    if kind == "svg":
        qr.save(out, kind="svg", scale=4, border=4, xmldecl=False)
    else:
        qr.save(out, kind="png", scale=4, border=4)
    return out.getvalue()


async def apply_certificate_issued(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    """A counterpart's certificate to a person we share: kept as a copy, the issuer's register decides."""
    held = await repo.get_copy(conn, t.here, d["certificate_number"])
    if held is None:
        await repo.insert_copy(conn, t.here, d, t.source, t.event_id)
        return applied()
    conflicts = field_conflicts(dict(held), d, ("holder_id_number", "issuer", "issued_on", "valid_until"))
    return ("conflict", conflicts, "this certificate is recorded here otherwise") if conflicts else applied()


async def apply_certificate_revoked(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    await repo.revoke_copy(conn, t.here, d["certificate_number"], t.source, d["revoked_on"])
    return applied()  # a copy we never held (or another issuer's) has nothing this can revoke
