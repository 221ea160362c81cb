"""Use cases of the verification service: the read model projection and the verifications."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from services.verification.adapters import repository as repo
from services.verification.adapters.audit_writer import AuditWriter
from services.verification.domain.verdict import (
    disclosed,
    token_attributes,
    token_verdict,
    verdict,
)
from shared import audit, signing
from shared.auth import Client
from shared.errors import InvalidInput
from shared.events import payloads as p
from shared.events.envelope import Envelope

log = logging.getLogger(__name__)

# Corrections of a certificate that the read model keeps; anything else is not ours to show.
CORRECTABLE = {"holder_name": str, "marital_status": str, "children_count": int, "valid_until": dt.date}


async def apply_lifecycle(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
    """Keep the read model in step with certificate.lifecycle.v1 and the corrections that touch it."""
    data = event.data
    if isinstance(data, p.CertificateIssuedV1):
        await repo.upsert_issued(conn, data.model_dump(), event.subject, event.id)
        if data.public_key_jwk is not None:
            await learn_key_from_event(conn, event, data)
    elif isinstance(data, p.CertificateRevokedV1):
        await repo.record_revocation(
            conn, data.certificate_number, data.issuer, data.status_index, data.revoked_on, data.reason
        )
    elif isinstance(data, p.RecordCorrectedV1):
        await apply_correction(conn, event.subject, data)


async def learn_key_from_event(
    conn: asyncpg.Connection, event: Envelope[Any], data: p.CertificateIssuedV1
) -> None:
    """Trust a key carried by a certificate only for its own issuer, and never replace a known kid."""
    jwk = data.public_key_jwk
    assert jwk is not None
    if jwk.kid != data.key_id or event.producer not in (None, data.issuer):
        log.warning("ignoring a key not matching its certificate", extra={"kid": jwk.kid[:64]})
        return
    outcome = await repo.learn_key(
        conn, kid=jwk.kid, issuer=data.issuer, public_key=signing.b64u_decode(jwk.x), source="event"
    )
    if outcome == "conflict":
        log.warning("a different key arrived under a known kid; kept the first", extra={"kid": jwk.kid})


async def apply_correction(conn: asyncpg.Connection, subject: str, data: p.RecordCorrectedV1) -> None:
    if data.record_type == "certificate":
        changes: dict[str, Any] = {}
        for name, kind in CORRECTABLE.items():
            value = data.changes.get(name)
            if value is not None:
                changes[name] = dt.date.fromisoformat(str(value)) if kind is dt.date else kind(value)
        if changes:
            await repo.correct_certificate(conn, data.record_id, changes)
    elif data.record_type == "person" and isinstance(data.changes.get("name"), str):
        await repo.correct_holder_name(conn, subject, str(data.changes["name"]))


def _entry(
    client: Client, purpose: str, subject: str | None, result: str, issuer: str | None, via: str
) -> audit.AuditEntry:
    return audit.AuditEntry(
        client.client_id,
        "certificate.verify",
        purpose,
        subject,
        {"result": result, "issuer": issuer, "via": via},
    )


async def verify_certificate(
    pool: asyncpg.Pool,
    writer: AuditWriter,
    client: Client,
    number: str,
    presented_subject: str,
    purpose: str,
) -> dict[str, Any]:
    """The verdict, the issuer and the attributes the purpose allows; answered once audited.

    Reads one row without a transaction (the read model is only ever appended to or updated
    whole-row by the projection), then waits for the group commit of its audit entry.
    """
    cert = await repo.get_certificate(pool, number)
    result = verdict(cert, presented_subject, dt.date.today())
    issuer = cert["issuer"] if cert is not None else None
    await writer.record(_entry(client, purpose, presented_subject, result, issuer, "number"))
    return {
        "certificate_number": number,
        "result": result,
        "issuer": issuer,
        "attributes": disclosed(cert, result, purpose) if cert is not None else {},
        "checked_at": dt.datetime.now(dt.UTC),
    }


async def verify_token(
    pool: asyncpg.Pool,
    writer: AuditWriter,
    client: Client,
    token: str,
    presented_subject: str | None,
    purpose: str,
    refresh_keys: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Check a QR token's signature against the issuer's published keys, then its revocation state.

    A kid nobody published yet makes the registries' keys be fetched once more (rate-limited by
    ``refresh_keys``) before the token is called not genuine.
    """
    try:
        header = signing.unverified_header(token)
    except signing.BadSignature as e:
        raise InvalidInput("the token is not a compact JWS", field="token", rule="compact-jws") from e
    key = await repo.key_of(pool, str(header.get("kid")))
    if key is None and refresh_keys is not None:
        await refresh_keys()
        key = await repo.key_of(pool, str(header.get("kid")))
    claims: dict[str, Any] | None = None
    if key is not None:
        try:
            claims = signing.verify(token, {key["kid"]: bytes(key["public_key"])})
        except signing.BadSignature:
            claims = None
    if claims is None or str(claims.get("iss")) != key["issuer"]:  # type: ignore[index]
        await writer.record(_entry(client, purpose, presented_subject, "invalid_signature", None, "token"))
        return _token_answer(None, "invalid_signature", None, {})
    issuer, number = key["issuer"], str(claims.get("num"))  # type: ignore[index]
    cert = await repo.get_certificate(pool, number)
    if cert is not None and cert["issuer"] != issuer:
        cert = None
    revoked = await repo.is_revoked(pool, issuer, int(claims.get("sti", -1)))
    result = token_verdict(claims, cert, revoked, presented_subject, dt.date.today())
    subject = presented_subject or str(claims.get("sub"))
    await writer.record(_entry(client, purpose, subject, result, issuer, "token"))
    return _token_answer(number, result, issuer, token_attributes(claims, cert, result, purpose))


def _token_answer(
    number: str | None, result: str, issuer: str | None, attrs: dict[str, Any]
) -> dict[str, Any]:
    return {
        "certificate_number": number,
        "result": result,
        "issuer": issuer,
        "attributes": attrs,
        "checked_at": dt.datetime.now(dt.UTC),
    }
