"""The marriage-and-childbearing certificate (婚育证明): issue, revoke, QR image, signing keys."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
from typing import Any

import asyncpg
import segno

from services.registry.adapters import keys, records
from services.registry.adapters import repository as repo
from services.registry.service_layer import signing_keys
from services.registry.service_layer.context import Context, announce
from services.registry.service_layer.persons import known_person
from shared import audit, signing
from shared.errors import Conflict, NotFound, RuleViolation
from shared.events import payloads as p


def _certificate_number(here: str, today: dt.date) -> str:
    suffix = base64.b32encode(os.urandom(5)).decode()[:8]
    return f"{here}-{today.year}-{suffix}"


def _kek(ctx: Context) -> str:
    return ctx.settings.key_encryption_key.get_secret_value()


async def issue_certificate(
    conn: asyncpg.Connection, ctx: Context, here: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Issue a signed marriage-and-childbearing certificate (婚育证明) for a person of this register."""
    holder = body["holder_id_number"]
    person = await known_person(conn, here, holder, "holder_id_number")
    today = dt.date.today()
    kid, key = await keys.active_key(conn, here, _kek(ctx), ctx.settings.key_rotation_overlap_days)
    cert: dict[str, Any] = {
        "certificate_number": _certificate_number(here, today),
        "holder_id_number": holder,
        "holder_name": person["name"],
        "marital_status": await repo.marital_status(conn, here, holder),
        "children_birth_dates": await repo.children_birth_dates(conn, here, holder),
        "issuer": here,
        "issued_on": today,
        "valid_until": today
        + dt.timedelta(days=body.get("valid_days") or ctx.settings.certificate_validity_days),
        "key_id": kid,
        "status_index": await repo.next_status_index(conn, here),
    }
    status_uri = f"{ctx.settings.status_list_base_url.rstrip('/')}/{here}"
    cert["token"] = signing.sign(certificate_claims(cert, ctx.subject(holder), status_uri), key, kid)
    await repo.insert_certificate(conn, here, cert)
    event = await announce(
        conn,
        ctx,
        here,
        event_type="certificate.issued.v1",
        id_number=holder,
        data=p.CertificateIssuedV1(**cert),
        origin=person["hukou_division"],
        destination=person["residence_division"],
        record=("certificates", cert["certificate_number"]),
    )
    return {**cert, "children_count": len(cert["children_birth_dates"]), "event_id": event.id}


def certificate_claims(
    cert: dict[str, Any], holder_subject: str, status_uri: str | None = None
) -> dict[str, Any]:
    """What the QR code carries: no raw identity number, only the pseudonymous holder key.

    ``status`` is the standard reference of the IETF Token Status List (the list at ``uri``,
    entry ``idx``), which any verifier of that draft follows; ``sti`` is the same index under
    the name this project's earlier kiosks read.
    """
    claims = {
        "iss": cert["issuer"],
        "num": cert["certificate_number"],
        "sub": holder_subject,
        "name": cert["holder_name"],
        "ms": cert["marital_status"],
        "ch": len(cert["children_birth_dates"]),
        "cbd": [d.isoformat() for d in cert["children_birth_dates"]],
        "iat": cert["issued_on"].isoformat(),
        "exp": cert["valid_until"].isoformat(),
        "sti": cert["status_index"],
    }
    if status_uri is not None:
        claims["status"] = {"status_list": {"idx": cert["status_index"], "uri": status_uri}}
    return claims


async def own_certificate(conn: asyncpg.Connection, here: str, number: str, lock: bool = False) -> Any:
    row = await records.get_certificate(conn, number, lock=lock)
    if row is None or row["jurisdiction"] != here:
        raise NotFound(
            "no such certificate issued by the client's jurisdiction",
            field="certificate_number",
            rule="exists",
        )
    return row


async def revoke_certificate(
    conn: asyncpg.Connection, ctx: Context, here: str, number: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Revoke a certificate; ``certificate.revoked.v1`` carries its status-list index."""
    row = await own_certificate(conn, here, number, lock=True)
    if row["revoked_on"] is not None:
        raise Conflict(
            "the certificate is already revoked", field="certificate_number", rule="already-revoked"
        )
    revoked_on = dt.date.today()
    await records.revoke_certificate(conn, number, revoked_on, body["reason"])
    person = await known_person(conn, here, row["holder_id_number"], "holder_id_number")
    event = await announce(
        conn,
        ctx,
        here,
        event_type="certificate.revoked.v1",
        id_number=row["holder_id_number"],
        data=p.CertificateRevokedV1(
            certificate_number=number,
            issuer=here,
            revoked_on=revoked_on,
            reason=body["reason"],
            status_index=row["status_index"],
        ),
        origin=person["hukou_division"],
        destination=person["residence_division"],
    )
    await records.set_revocation_event(conn, number, event.id)
    return {
        "certificate_number": number,
        "issuer": here,
        "revoked_on": revoked_on,
        "reason": body["reason"],
        "status_index": row["status_index"],
        "event_id": event.id,
    }


async def certificate_qr(conn: asyncpg.Connection, ctx: Context, here: str, number: str, kind: str) -> bytes:
    """The certificate's token as a QR image (SVG or PNG) for printing; the read is audited."""
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
                "certificate.printed",
                "certificate_issuance",
                ctx.subject(row["holder_id_number"]),
                {"certificate_number": number, "format": kind},
            )
        ],
    )
    qr = segno.make(row["token"], error="m", micro=False)
    out = io.BytesIO()
    if kind == "svg":
        qr.save(out, kind="svg", scale=4, border=4, xmldecl=False)
    else:
        qr.save(out, kind="png", scale=4, border=4)
    return out.getvalue()


async def jwks(conn: asyncpg.Connection) -> dict[str, Any]:
    """Public signing keys: active ones, retired ones inside their overlap window, revoked ones."""
    rows = await keys.published_keys(conn)
    return {
        "keys": [
            signing.jwk(
                r["kid"],
                bytes(r["public_key"]),
                jurisdiction=r["jurisdiction"],
                status=keys.key_state(r),
                expires_at=r["expires_at"].isoformat() if r["expires_at"] else None,
            )
            for r in rows
        ]
    }


async def rotate_key(conn: asyncpg.Connection, ctx: Context, here: str) -> dict[str, Any]:
    """Make a new signing key for the jurisdiction; the old one stays published for the overlap window."""
    kid = await signing_keys.new_key(conn, ctx.settings, here, rotate=True)
    return {"jurisdiction": here, "active_kid": kid, **await jwks(conn)}
