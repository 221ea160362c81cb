"""Use cases of the verification service."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from services.verification.adapters import repository as repo
from services.verification.domain.verdict import disclosed, verdict
from shared import audit
from shared.auth import Client
from shared.events import payloads as p
from shared.events.envelope import Envelope


async def apply_lifecycle(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
    """Keep the read model in step with certificate.lifecycle.v1."""
    if isinstance(event.data, p.CertificateIssuedV1):
        await repo.upsert_issued(conn, event.data.model_dump(), event.subject, event.id)
    elif isinstance(event.data, p.CertificateRevokedV1):
        await repo.mark_revoked(conn, event.data.certificate_number, event.data.revoked_on, event.data.reason)


async def verify_certificate(
    conn: asyncpg.Connection, client: Client, number: str, presented_subject: str, purpose: str
) -> dict[str, Any]:
    """The verdict, the issuer and the attributes the purpose allows; the check is audited."""
    cert = await repo.get_certificate(conn, number)
    result = verdict(cert, presented_subject, dt.date.today())
    await audit.append(
        conn,
        [
            audit.AuditEntry(
                client.client_id,
                "certificate.verify",
                purpose,
                presented_subject,
                {"result": result, "issuer": cert["issuer"] if cert else None},
            )
        ],
    )
    return {
        "certificate_number": number,
        "result": result,
        "issuer": cert["issuer"] if cert and result != "not_found" else None,
        "attributes": disclosed(cert, result, purpose) if cert else {},
        "checked_at": dt.datetime.now(dt.UTC),
    }
