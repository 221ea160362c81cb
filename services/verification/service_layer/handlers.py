"""Use cases of the verification service: the read model projection and the verifications."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg

from services.verification.adapters import repository as repo
from services.verification.adapters.audit_writer import CHECK_ACTION, AuditWriter, NumberCheck
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
from shared.events.signature import NOT_AUTHORIZED, Rejected

log = logging.getLogger(__name__)

# Corrections of a certificate that the read model keeps; anything else is not ours to show.
CORRECTABLE = {"holder_name": str, "marital_status": str, "children_count": int, "valid_until": dt.date}


def certificate_changes(data: p.RecordCorrectedV1) -> dict[str, Any]:
    """The corrected fields of a certificate that the read model keeps, typed."""
    changes: dict[str, Any] = {}
    for name, kind in CORRECTABLE.items():
        value = data.changes.get(name)
        if value is not None:
            changes[name] = dt.date.fromisoformat(str(value)) if kind is dt.date else kind(value)
    return changes


def corrected_holder_name(data: p.RecordCorrectedV1) -> str | None:
    name = data.changes.get("name") if data.record_type == "person" else None
    return name if isinstance(name, str) else None


async def apply_correction(
    conn: asyncpg.Connection, subject: str, data: p.RecordCorrectedV1, corrector: str
) -> None:
    """A certificate is corrected only by its issuer; a holder's name only on that issuer's certificates.

    The authority rule that needs the read model: a correction changes only certificates issued
    by the correcting jurisdiction (the envelope checks come first, ``shared.events.signature``).
    """
    if data.record_type == "certificate":
        cert = await repo.get_certificate(conn, data.record_id)
        changes = certificate_changes(data)
        if cert is not None and cert["issuer"] != corrector:
            if all(cert[k] == v for k, v in changes.items()):
                return  # changes nothing (a reconciliation repair sending the issuer's own values back)
            raise Rejected(NOT_AUTHORIZED, f"{corrector} corrects a certificate of another issuer")
        if changes:
            await repo.correct_certificate(conn, data.record_id, changes)
    elif (name := corrected_holder_name(data)) is not None:
        await repo.correct_holder_name(conn, subject, name, corrector)


async def rebuild_read_model(conn: asyncpg.Connection, events: Iterable[Envelope[Any]]) -> None:
    """The read model from every event at once, for a rebuild from the beginning into cleared
    tables: the outcome of ``messagebus.HANDLERS`` on each event in turn, folded in memory and
    written with COPY (a replay at tens of thousands of events a second, not a few thousand).
    """
    certs: dict[str, dict[str, Any]] = {}
    by_holder: dict[str, list[dict[str, Any]]] = {}
    revocations: dict[tuple[str, int], tuple[str, dt.date, str]] = {}
    now = dt.datetime.now(dt.UTC)
    for event in events:
        data = event.data
        if isinstance(data, p.CertificateIssuedV1):
            if data.certificate_number not in certs:  # upsert_issued: the first one stays
                revoked = revocations.get((data.issuer, data.status_index))
                if revoked is not None and revoked[0] != data.certificate_number:
                    revoked = None
                cert = repo.certificate_row(data, event.subject, event.id, now)
                if revoked is not None:
                    cert["revoked_on"], cert["revocation_reason"] = revoked[1], revoked[2]
                certs[data.certificate_number] = cert
                by_holder.setdefault(event.subject, []).append(cert)
        elif isinstance(data, p.CertificateRevokedV1):  # record_revocation
            key = (data.issuer, data.status_index)
            revocations.setdefault(key, (data.certificate_number, data.revoked_on, data.reason))
            revoked_cert = certs.get(data.certificate_number)
            if revoked_cert is not None and revoked_cert["revoked_on"] is None:
                revoked_cert["revoked_on"], revoked_cert["revocation_reason"] = data.revoked_on, data.reason
        elif isinstance(data, p.RecordCorrectedV1):  # apply_correction
            if data.record_type == "certificate":
                changes = certificate_changes(data)
                corrected = certs.get(data.record_id)
                if changes and corrected is not None and corrected["issuer"] == event.producer:
                    corrected.update(changes, corrected_at=now)
            elif (name := corrected_holder_name(data)) is not None:
                for cert in by_holder.get(event.subject, []):
                    if cert["issuer"] == event.producer:
                        cert.update(holder_name=name, corrected_at=now)
    await repo.copy_certificates(conn, list(certs.values()))
    await repo.copy_revocations(
        conn, [(issuer, index, *rest) for (issuer, index), rest in revocations.items()]
    )


def _entry(
    client: Client,
    purpose: str,
    subject: str | None,
    result: str,
    issuer: str | None,
    via: str,
    claims: dict[str, Any] | None = None,
) -> audit.AuditEntry:
    """A token check's audit entry; a genuine token's number and holder go with it, so the
    holder's registries are told of the check (``audit_writer.disclosure_of``)."""
    detail: dict[str, Any] = {"result": result, "issuer": issuer, "via": via}
    if claims:
        detail |= {"certificate_number": str(claims.get("num")), "holder": str(claims.get("sub"))}
    if client.jurisdiction:
        detail["division"] = client.jurisdiction
    return audit.AuditEntry(client.client_id, CHECK_ACTION, purpose, subject, detail)


async def verify_certificate(
    writer: AuditWriter,
    client: Client,
    number: str,
    presented_subject: str,
    purpose: str,
) -> dict[str, Any]:
    """The verdict, the issuer and the attributes the purpose allows; answered once audited.

    The certificate is read by the statement that makes the audit entry durable, one statement
    for a batch of concurrent verifications (``AuditWriter.check``); the entry keeps the evidence
    read, and the chainer draws the same verdict from it.
    """
    today = dt.date.today()
    cert = await writer.check(
        NumberCheck(number, client.client_id, purpose, presented_subject, today, client.jurisdiction)
    )
    result = verdict(cert, presented_subject, today)
    return {
        "certificate_number": number,
        "result": result,
        "issuer": cert["issuer"] if cert is not None else None,
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
    if key["revoked_at"] is not None:  # type: ignore[index]  # the issuer withdrew the key: nothing it signed holds
        subject = presented_subject or str(claims.get("sub"))
        await writer.record(_entry(client, purpose, subject, "revoked", issuer, "token", claims))
        return _token_answer(number, "revoked", issuer, {})
    cert = await repo.get_certificate(pool, number)
    if cert is not None and cert["issuer"] != issuer:
        cert = None
    revoked = await repo.is_revoked(pool, issuer, int(claims.get("sti", -1)))
    result = token_verdict(claims, cert, revoked, presented_subject, dt.date.today())
    subject = presented_subject or str(claims.get("sub"))
    await writer.record(_entry(client, purpose, subject, result, issuer, "token", claims))
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
