"""The registry's part in the subject-access log: disclosures others report, and its own reads
of a person reported to the person's other registry.

Every party that received or read a person's data appears in ``GET /v1/persons/{id}/disclosures``:
reads at this registry are appended to its audit log as they happen (``reads``); notifications
(with their real targets), REST pick-ups and certificate checks reach it as the entries of signed
``disclosure.batch.v1`` events from the exchange and verification (``shared.disclosures``),
and a read here of a person whose origin or residence another registry keeps is told to that
registry as one ``disclosure.recorded.v1``. Each disclosure is appended once (the consumer's
inbox), at its own time.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from services.registry.service_layer.context import source
from services.registry.settings import RegistrySettings
from shared import audit, disclosures
from shared.events import payloads as p
from shared.events.envelope import Envelope
from shared.sensitivity import restored_purpose

_DETAIL = (
    "recipient_division",
    "event_type",
    "event_id",
    "notification_id",
    "certificate_number",
    "issuer",
    "result",
)


def entry(subject: str, discloser: str, d: p.DisclosureRecordedV1 | p.DisclosureEntryV1) -> audit.AuditEntry:
    """The audit entry of a reported disclosure: who received what, for which purpose, when."""
    detail: dict[str, Any] = {"discloser": discloser, "disclosure_id": str(d.disclosure_id)}
    for name in _DETAIL:  # what ``model_dump(mode="json", exclude_none=True)`` gives, at a third of the cost
        value = getattr(d, name)
        if value is not None:
            detail[name] = str(value) if isinstance(value, uuid.UUID) else value
    return audit.AuditEntry(
        d.recipient, d.action, restored_purpose(d.purpose), subject, detail, d.disclosed_at
    )


def entries(event: Envelope[Any]) -> list[audit.AuditEntry]:
    """The audit entries of a disclosure event: one, or one per entry of a batch."""
    d = event.data
    if isinstance(d, p.DisclosureBatchV1):
        return [entry(e.subject, d.discloser, e) for e in d.entries]
    return [entry(event.subject, d.discloser, d)]


async def record_reported(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
    """Append a disclosure another party reported to this registry's audit log (once per database,
    however many of its divisions the event names)."""
    await record_all_reported(conn, [event])


async def record_all_reported(conn: asyncpg.Connection, events: list[Envelope[Any]]) -> None:
    """``record_reported`` for a consumer's batch: one append to the chain, in order."""
    await audit.append(conn, [e for event in events for e in entries(event)])


def reported_to_us(settings: RegistrySettings, event: Envelope[Any]) -> bool:
    """Disclosures addressed to a division served here, not the ones this registry reported."""
    served = settings.served
    return event.producer not in served and any(d in served for d in event.data.record_at)


async def tell_read(
    conn: asyncpg.Connection,
    settings: RegistrySettings,
    person: asyncpg.Record,
    purpose: str,
    *,
    reader: str,
    reader_division: str | None,
    certificate_number: str | None = None,
    issuer: str | None = None,
) -> None:
    """A read here of a person another registry keeps too (origin or residence elsewhere): that
    registry's subject-access log names the reader (client ``reader`` of ``reader_division``) as
    well. Every read of her data here is told, as ``person.read`` (the one action a registry
    reports): her record, a pregnancy of hers, a print of her certificate (with its
    ``certificate_number`` and ``issuer``)."""
    here = person["jurisdiction"]
    others = {person["hukou_division"], person["residence_division"]} - settings.served
    told = disclosures.disclosure(
        record_at=others,
        discloser=here,
        action="person.read",
        recipient=reader,
        recipient_division=reader_division,
        purpose=purpose,
        certificate_number=certificate_number,
        issuer=issuer,
    )
    await disclosures.publish(conn, source(here), [(person["subject"], told)])
