"""The marriage-and-childbearing certificate (婚育证明): its number and what its token claims. Pure."""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid
from typing import Any

from pydantic import BaseModel, Field

from services.registry.domain.rules import Command
from shared.events.payloads import MaritalStatus
from shared.identity import IdNumber
from shared.text import PlainText


def certificate_number(here: str, today: dt.date) -> str:
    suffix = base64.b32encode(os.urandom(5)).decode()[:8]
    return f"{here}-{today.year}-{suffix}"


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


class IssueCertificate(Command):
    """A certificate to issue."""

    holder_id_number: IdNumber
    valid_days: int | None = Field(default=None, ge=1, le=730)


class RevokeCertificate(Command):
    """A certificate's revocation."""

    reason: PlainText = Field(min_length=3, max_length=200)


class CertificateIssued(BaseModel):
    """A certificate as issued: its signed token and the paths of its QR images."""

    certificate_number: str
    holder_id_number: str
    holder_name: str
    marital_status: MaritalStatus
    children_count: int
    children_birth_dates: list[dt.date]
    issuer: str
    issued_on: dt.date
    valid_until: dt.date
    key_id: str
    status_index: int
    token: str = Field(description="compact JWS (EdDSA) to print as a QR code")
    qr_svg: str = Field(description="path of the QR image (SVG)")
    qr_png: str = Field(description="path of the QR image (PNG)")
    event_id: uuid.UUID


class CertificateRevoked(BaseModel):
    """A certificate's revocation as recorded here."""

    certificate_number: str
    issuer: str
    revoked_on: dt.date
    reason: str
    status_index: int
    event_id: uuid.UUID
