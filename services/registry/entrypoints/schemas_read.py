"""Bodies of certificates, keys and reads of the registry API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.registry.entrypoints.schemas import EVENT_ID, MOTHER, PERSON, _example, _In
from shared.events.payloads import MaritalStatus, Sex
from shared.identity import IdNumber
from shared.text import PlainText

CERT_NUMBER = "320412-2026-ABCD2345"
TOKEN = "eyJhbGciOiJFZERTQSIsImtpZCI6IjMyMDQxMi0yMDI2In0.eyJpc3MiOiIzMjA0MTIifQ.c2lnbmF0dXJl"  # noqa: S105 - an example, not a secret


class CertificateIn(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"holder_id_number": MOTHER, "valid_days": 180}]}
    )
    holder_id_number: IdNumber
    valid_days: int | None = Field(default=None, ge=1, le=730)


class CertificateOut(BaseModel):
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


class RevocationIn(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "marital status changed"}]}
    )
    reason: PlainText = Field(min_length=3, max_length=200)


class RevocationOut(BaseModel):
    model_config = _example(
        certificate_number=CERT_NUMBER,
        issuer="320412",
        revoked_on="2026-02-01",
        reason="marital status changed",
        status_index=17,
        event_id=EVENT_ID,
    )
    certificate_number: str
    issuer: str
    revoked_on: dt.date
    reason: str
    status_index: int
    event_id: uuid.UUID


JWK: dict[str, Any] = {
    "kty": "OKP",
    "crv": "Ed25519",
    "alg": "EdDSA",
    "use": "sig",
    "kid": "320412-20260101000000-a1b2c3",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    "jurisdiction": "320412",
    "status": "active",
    "expires_at": None,
}


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [JWK]})
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    alg: Literal["EdDSA"]
    use: Literal["sig"]
    kid: str
    x: str = Field(description="the raw public key, base64url")
    jurisdiction: str
    status: Literal["active", "retired", "revoked"] = Field(
        description="revoked: compromised, withdrawn by the jurisdiction; tokens under it must be refused"
    )
    expires_at: str | None = Field(description="retired keys: until when certificates signed by it verify")


class Jwks(BaseModel):
    model_config = _example(keys=[JWK])
    keys: list[Jwk]


class KeyRotationOut(Jwks):
    model_config = _example(jurisdiction="320412", active_kid=JWK["kid"], keys=[JWK])
    jurisdiction: str
    active_kid: str


class PersonRecord(BaseModel):
    """A person's record; which sections appear depends on the purpose and the client's rights."""

    model_config = _example(
        **PERSON,
        jurisdiction="320412",
        source_division="320412",
        migrations=[
            {
                "id": "5b0c9a52-1d7e-4c55-9d1e-3b1f7a0c2e11",
                "kind": "departed",
                "from_division": "320412",
                "to_division": "440703",
                "migration_date": "2025-02-01",
                "source_division": "320412",
            }
        ],
        births=[],
        marriages=[],
    )
    id_number: str
    name: str
    sex: Sex
    birth_date: dt.date
    hukou_division: str
    residence_division: str
    source_division: str
    jurisdiction: str
    migrations: list[dict[str, Any]] | None = None
    births: list[dict[str, Any]] | None = None
    marriages: list[dict[str, Any]] | None = None
    pregnancies: list[dict[str, Any]] | None = None
    certificates: list[dict[str, Any]] | None = None


class Disclosure(BaseModel):
    seq: int | None = Field(description="position in this registry's audit chain")
    at: dt.datetime
    client_id: str
    action: str = Field(
        description="person.read, pregnancy.read, certificate.printed (reads here); notification.sent, "
        "notification.fetched, certificate.verified, person.read (reported by the exchange, "
        "verification or the person's other registry: detail.discloser, detail.disclosure_id)"
    )
    purpose: str | None
    detail: dict[str, Any]


class Disclosures(BaseModel):
    model_config = _example(
        id_number=MOTHER,
        jurisdiction="320412",
        disclosures=[
            {
                "seq": 42,
                "at": "2026-01-05T08:30:00Z",
                "client_id": "dept-320412",
                "action": "person.read",
                "purpose": "social_services",
                "detail": {"jurisdiction": "320412", "sections": ["births", "migrations"]},
            }
        ],
    )
    id_number: str
    jurisdiction: str
    disclosures: list[Disclosure]


class PregnancyRecord(BaseModel):
    model_config = _example(
        pregnancy_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        mother_id_number=MOTHER,
        registered_in="440703",
        registered_on="2025-03-01",
        expected_delivery="2025-09-01",
        closed_on=None,
        outcome=None,
        jurisdiction="440703",
    )
    pregnancy_id: uuid.UUID
    mother_id_number: str
    registered_in: str
    registered_on: dt.date
    expected_delivery: dt.date | None
    closed_on: dt.date | None
    outcome: str | None
    jurisdiction: str
