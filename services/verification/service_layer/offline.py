"""Checks a kiosk made while offline, reported when it is back: into the audit log like any other.

The kiosk tells what it answered and when; the service re-checks each token's signature so the
entry names the holder's key and the issuer only for a genuine token (a tampered one is recorded
without a subject). The subject-access log thereby stays complete across network outages.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import asyncpg

from services.verification.adapters import repository as repo
from services.verification.adapters.audit_writer import CHECK_ACTION, AuditWriter
from services.verification.service_layer.verifications import Claims, signed_by, token_kid
from shared import audit, signing
from shared.auth import Client


@dataclass(frozen=True)
class OfflineCheck:
    token: str
    purpose: str
    result: str
    checked_at: dt.datetime


async def _genuine_claims(pool: asyncpg.Pool, token: str) -> tuple[str, Claims] | None:
    """The issuer and claims of a token signed by a key bound to the issuer it names, else None."""
    try:
        kid = token_kid(token)
    except signing.BadSignature:
        return None
    if kid is None:
        return None
    key = await repo.key_of(pool, kid)
    claims = signed_by(key, token) if key is not None else None
    return (str(key["issuer"]), claims) if key is not None and claims is not None else None


def _told(client: Client, claims: Claims) -> dict[str, str]:
    """What the holder's registries are told of a genuine token's check (none for a forgery)."""
    told = {"certificate_number": str(claims["num"])} if "num" in claims else {}
    return told | ({"division": client.jurisdiction} if client.jurisdiction and told else {})


async def record_offline_checks(
    pool: asyncpg.Pool, writer: AuditWriter, client: Client, checks: list[OfflineCheck]
) -> dict[str, int]:
    """Audit each reported check (answered once every entry is durable)."""

    async def one(check: OfflineCheck) -> bool:
        genuine = await _genuine_claims(pool, check.token)
        issuer, claims = genuine if genuine is not None else (None, {})
        subject = str(claims["sub"]) if "sub" in claims else None
        await writer.record(
            audit.AuditEntry(
                client.client_id,
                CHECK_ACTION,
                check.purpose,
                subject,
                {
                    "result": check.result,
                    "issuer": issuer,
                    "via": "offline",
                    "checked_at": check.checked_at.isoformat(),
                    "genuine": genuine is not None,
                    **_told(client, claims),
                },
            )
        )
        return genuine is not None

    outcomes = await asyncio.gather(*(one(c) for c in checks))
    return {"recorded": len(outcomes), "genuine": sum(outcomes)}
