"""Bodies of the certificate routes: issue and revoke a 婚育证明."""

from __future__ import annotations

from pydantic import ConfigDict

from services.registry.domain.certificates import (
    CertificateIssued,
    CertificateRevoked,
    IssueCertificate,
    RevokeCertificate,
)
from services.registry.entrypoints.schemas_vital_events import EVENT_ID, MOTHER, _example

CERT_NUMBER = "320412-2026-ABCD2345"


TOKEN = "eyJhbGciOiJFZERTQSIsImtpZCI6IjMyMDQxMi0yMDI2In0.eyJpc3MiOiIzMjA0MTIifQ.c2lnbmF0dXJl"  # noqa: S105 - an example, not a secret


class CertificateIn(IssueCertificate):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"holder_id_number": MOTHER, "valid_days": 180}]}
    )


class CertificateOut(CertificateIssued):
    model_config = _example(
        certificate_number=CERT_NUMBER,
        holder_id_number=MOTHER,
        holder_name="李秀英",
        marital_status="married",
        children_count=1,
        children_birth_dates=["2025-09-01"],
        issuer="320412",
        issued_on="2026-01-05",
        valid_until="2026-07-04",
        key_id="320412-20260101000000-a1b2c3",
        status_index=17,
        token=TOKEN,
        qr_svg=f"/v1/certificates/{CERT_NUMBER}/qr.svg",
        qr_png=f"/v1/certificates/{CERT_NUMBER}/qr.png",
        event_id=EVENT_ID,
    )


class RevocationIn(RevokeCertificate):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "marital status changed"}]}
    )


class RevocationOut(CertificateRevoked):
    model_config = _example(
        certificate_number=CERT_NUMBER,
        issuer="320412",
        revoked_on="2026-02-01",
        reason="marital status changed",
        status_index=17,
        event_id=EVENT_ID,
    )
