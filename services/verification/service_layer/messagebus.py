"""Verification's handler table: what each event type does to the read model.

``HANDLERS`` is used by the read model's consumer (``entrypoints.consumer``), by
``exchangectl replay verification --event-by-event`` and by dead-letter replay; the bulk
rebuild (``handlers.rebuild_read_model``) folds the same outcomes in memory.

Beside each entry, who may send it (DESIGN section 10): ``shared.events.signature.authority``
refuses any certificate event not from its issuer, or carrying a key (keys come only from the
issuer's bound key URL), before any handler runs.
"""

from __future__ import annotations

import asyncpg

from services.verification.adapters import repository as repo
from services.verification.service_layer.handlers import apply_correction, apply_corrections_ahead, made_at
from services.verification.settings import VerificationSettings
from shared.dispatch import Bound, Handler, dispatcher
from shared.events import payloads as p
from shared.events.envelope import Envelope

TOPICS = ["certificate.lifecycle.v1", "vital.correction.v1"]


async def _issued(
    conn: asyncpg.Connection, settings: VerificationSettings, event: Envelope[p.CertificateIssuedV1]
) -> None:
    await repo.upsert_issued(conn, event.data.model_dump(), event.subject, event.id, made_at(event))
    # Corrections travel on another topic and may have come first.
    await apply_corrections_ahead(conn, event)


async def _revoked(
    conn: asyncpg.Connection, settings: VerificationSettings, event: Envelope[p.CertificateRevokedV1]
) -> None:
    d = event.data
    await repo.record_revocation(conn, d.certificate_number, d.issuer, d.status_index, d.revoked_on, d.reason)


async def _corrected(
    conn: asyncpg.Connection, settings: VerificationSettings, event: Envelope[p.RecordCorrectedV1]
) -> None:
    await apply_correction(conn, event.subject, event.data, str(event.producer), made_at(event))


HANDLERS: dict[str, Handler[VerificationSettings]] = {
    "certificate.issued.v1": _issued,  # authority: the issuer
    "certificate.revoked.v1": _revoked,  # authority: the issuer
    # Authority: a registry; it changes only certificates of its own issue (``apply_correction``).
    "record.corrected.v1": _corrected,
}


def handler(settings: VerificationSettings) -> Bound:
    """``HANDLERS`` as the read model consumer's handler."""
    return dispatcher(HANDLERS, settings, topics=TOPICS)
