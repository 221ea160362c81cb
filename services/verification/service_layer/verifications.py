"""The verifications: typed commands in, typed outcomes out (the routes serialise the outcome
as it is, ``entrypoints/api.py``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.verification.adapters import repository as repo
from services.verification.adapters.audit_writer import CHECK_ACTION, AuditWriter, NumberCheck
from services.verification.domain.verdict import (
    Purpose,
    Result,
    TokenResult,
    disclosed,
    token_attributes,
    token_verdict,
    verdict,
)
from shared import audit, signing
from shared.auth import Client
from shared.errors import InvalidInput
from shared.offline_verifier import certificate_claims

# A token's claims, as its issuer signed them (JSON: the edge where ``Any`` stays).
Claims = dict[str, Any]


@dataclass(frozen=True, slots=True)
class VerifyCertificate:
    """Is certificate ``number`` genuine, in force and held by the person keyed ``presented_subject``?"""

    number: str
    presented_subject: str
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class VerifyToken:
    """Is this signed QR token genuine and in force (and, when one is presented, its holder's)?"""

    token: str
    presented_subject: str | None
    purpose: Purpose


@dataclass(frozen=True, slots=True)
class Verification:
    """The answer: field for field the documented response (``VerificationOut``, ``TokenOut``)."""

    certificate_number: str | None
    result: Result | TokenResult
    issuer: str | None
    attributes: dict[str, object]
    checked_at: dt.datetime


async def verify_certificate(writer: AuditWriter, client: Client, command: VerifyCertificate) -> Verification:
    """The verdict, the issuer and the attributes the purpose allows; answered once audited.

    The certificate is read by the statement that makes the audit entry durable, one statement
    for a batch of concurrent verifications (``AuditWriter.check``); the entry keeps the evidence
    read, and the chainer draws the same verdict from it.
    """
    today = dt.date.today()
    number, subject, purpose = command.number, command.presented_subject, command.purpose
    cert = await writer.check(
        NumberCheck(number, client.client_id, purpose, subject, today, client.jurisdiction)
    )
    result = verdict(cert, subject, today)
    return Verification(
        certificate_number=number,
        result=result,
        issuer=cert["issuer"] if cert is not None else None,
        attributes=disclosed(cert, result, purpose) if cert is not None else {},
        checked_at=dt.datetime.now(dt.UTC),
    )


async def verify_token(
    pool: asyncpg.Pool,
    writer: AuditWriter,
    client: Client,
    command: VerifyToken,
    refresh_keys: Callable[[], Awaitable[None]] | None = None,
) -> Verification:
    """Check a QR token's signature against the issuer's published keys, then its revocation state.

    A kid nobody published yet makes the registries' keys be fetched once more (rate-limited by
    ``refresh_keys``) before the token is called not genuine.
    """
    purpose, presented = command.purpose, command.presented_subject
    signed = await _genuine(pool, command.token, refresh_keys)
    if signed is None:
        await writer.record(_entry(client, purpose, presented, "invalid_signature", None, "token"))
        return _answer(None, "invalid_signature", None, {})
    key, claims = signed
    issuer, number = str(key["issuer"]), str(claims.get("num"))
    subject = presented or str(claims.get("sub"))
    if key["revoked_at"] is not None:  # the issuer withdrew the key: nothing it signed holds
        await writer.record(_entry(client, purpose, subject, "revoked", issuer, "token", claims))
        return _answer(number, "revoked", issuer, {})
    cert = await repo.get_certificate(pool, number)
    if cert is not None and cert["issuer"] != issuer:
        cert = None
    revoked = await repo.is_revoked(pool, issuer, int(claims.get("sti", -1)))
    result = token_verdict(claims, cert, revoked, presented, dt.date.today())
    await writer.record(_entry(client, purpose, subject, result, issuer, "token", claims))
    return _answer(number, result, issuer, token_attributes(claims, cert, result, purpose))


async def _genuine(
    pool: asyncpg.Pool, token: str, refresh_keys: Callable[[], Awaitable[None]] | None
) -> tuple[asyncpg.Record, Claims] | None:
    """The published key that signed the token and its claims; None unless the token is
    signed by a key of the issuer it names."""
    try:
        kid = token_kid(token)
    except signing.BadSignature as e:
        raise InvalidInput("the token is not a compact JWS", field="token", rule="compact-jws") from e
    if kid is None:
        return None
    key = await repo.key_of(pool, kid)
    if key is None and refresh_keys is not None:
        await refresh_keys()
        key = await repo.key_of(pool, kid)
    claims = signed_by(key, token) if key is not None else None
    return (key, claims) if key is not None and claims is not None else None


def token_kid(token: str) -> str | None:
    """The key id a token's header names, if it can name a key at all (plain printable text of a
    key id's length); None for anything else (a NUL, say), which no published key is. Raises
    ``BadSignature`` if the token is not a compact JWS."""
    kid = signing.unverified_header(token).get("kid")
    return kid if isinstance(kid, str) and 0 < len(kid) <= 100 and kid.isprintable() else None


def signed_by(key: asyncpg.Record, token: str) -> Claims | None:
    """The token's claims if ``key`` signed it, is the key of the issuer it names, and they are a
    certificate's (``certificate_claims``), else None."""
    try:
        claims = signing.verify(token, {key["kid"]: bytes(key["public_key"])})
    except signing.BadSignature:
        return None
    # A certificate's claims, as registries issue them: anything else is no certificate.
    return claims if str(claims.get("iss")) == key["issuer"] and certificate_claims(claims) else None


def _entry(
    client: Client,
    purpose: str,
    subject: str | None,
    result: str,
    issuer: str | None,
    via: str,
    claims: Claims | None = None,
) -> audit.AuditEntry:
    """A token check's audit entry; a genuine token's number and holder go with it, so the
    holder's registries are told of the check (``audit_writer.disclosure_of``)."""
    detail: dict[str, object] = {"result": result, "issuer": issuer, "via": via}
    if claims:
        detail |= {"certificate_number": str(claims.get("num")), "holder": str(claims.get("sub"))}
    if client.jurisdiction:
        detail["division"] = client.jurisdiction
    return audit.AuditEntry(client.client_id, CHECK_ACTION, purpose, subject, detail)


def _answer(
    number: str | None, result: Result | TokenResult, issuer: str | None, attrs: dict[str, object]
) -> Verification:
    return Verification(number, result, issuer, attrs, dt.datetime.now(dt.UTC))
