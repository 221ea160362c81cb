"""Disclosure events (``disclosure.recorded.v1``): how the parties that hand a person's data to
someone else tell the person's registries, so that each registry's subject-access log
(``GET /v1/persons/{id}/disclosures``) names every party that received or read it.

A service never writes another service's database: the discloser (the exchange for the
notifications it routes and the payloads jurisdictions pick up over REST, verification for the
certificates it checks, a registry for its reads of a counterpart's record) writes the event to
its own outbox in the transaction of the disclosure; its relay signs it; each registry named in
``record_at`` that keeps the person appends it to its hash-chained audit log (once: the inbox).
Kafka keys and subjects are pseudonymous subject keys; sensitive event types and purposes (a
pregnancy, maternal care) travel under the neutral name, restored by the person's registries. An
event type beside a restricted purpose travels neutral too: a ``record.corrected.v1`` "for maternal
care" would say that a pregnancy was corrected.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypedDict, Unpack

import asyncpg

from shared.events import payloads as p
from shared.outbox import batched, queue_event
from shared.sensitivity import (
    NEUTRAL_CATEGORY,
    SENSITIVE_PURPOSES,
    is_restricted,
    neutral_purpose,
    neutral_type,
)

EVENT_TYPE = "disclosure.recorded.v1"
BATCH_TYPE = "disclosure.batch.v1"
TYPES = (EVENT_TYPE, BATCH_TYPE)
SEQUENCE_SPACE = "#disclosures"
# Entries per batch event: ~0.35 KB of JSON each, so a batch stays well under a broker's 1 MB.
BATCH_ENTRIES = 500


def purpose_of(event_type: str, data: object = None) -> str:
    """The purpose a notification of ``event_type`` carrying ``data`` serves: maternal care for a
    restricted event (a pregnancy, or a correction of one: ``is_restricted``), registration otherwise."""
    return "maternal_care" if is_restricted(event_type, data) else "registration"


class Details(TypedDict, total=False):
    """What a disclosure may say beyond who disclosed what to whom (``DisclosureRecordedV1``)."""

    recipient_division: str | None
    event_type: str | None
    event_id: uuid.UUID | None
    notification_id: uuid.UUID | None
    certificate_number: str | None
    issuer: str | None
    result: str | None


Disclosure = dict[str, Any]
"""What ``disclosure`` makes: the fields of a ``DisclosureRecordedV1``, validated once where they
are published (``publish``: as that model; ``publish_batched``: as the entries of a batch, in one
validation of the whole batch), not once more on the way."""


def disclosure(
    *,
    record_at: Iterable[str | None],
    discloser: str,
    action: p.DisclosureAction,
    recipient: str,
    purpose: str,
    disclosed_at: dt.datetime | None = None,
    disclosure_id: uuid.UUID | None = None,
    **fields: Unpack[Details],
) -> Disclosure | None:
    """One disclosure; None when no registry is there to record it."""
    registries = sorted({d for d in record_at if d})
    if not registries:
        return None
    event_type = fields.get("event_type")
    if event_type:  # beside a restricted purpose any type is neutral (a correction of a pregnancy)
        fields["event_type"] = NEUTRAL_CATEGORY if purpose in SENSITIVE_PURPOSES else neutral_type(event_type)
    return {
        "disclosure_id": disclosure_id or uuid.uuid4(),
        "record_at": registries,
        "discloser": discloser,
        "action": action,
        "recipient": recipient,
        "purpose": neutral_purpose(purpose),
        "disclosed_at": disclosed_at or dt.datetime.now(dt.UTC),
        **fields,
    }


async def publish(
    conn: asyncpg.Connection, source: str, items: Sequence[tuple[str, Disclosure | None]]
) -> None:
    """Queue the disclosure events of ``(subject, disclosure)`` pairs in the caller's transaction
    (one statement for the sequence numbers, one COPY for the rows; inside a consumer's batch, with
    the batch's other events); the relay signs and sends.

    Disclosures are numbered apart from the source's other events (``<source>#disclosures``): the
    exchange orders a registry's vital events by their sequence and never sees its disclosures,
    so a disclosure numbered among them would leave a gap there that no event ever fills."""
    async with batched(conn):
        for subject, d in items:
            if d is not None:
                await queue_event(
                    conn,
                    event_type=EVENT_TYPE,
                    source=source,
                    subject=subject,
                    data=p.DisclosureRecordedV1.model_validate(d),
                    numbered_in=source + SEQUENCE_SPACE,
                )


_BATCH_FIELDS = frozenset({"record_at", "discloser"})  # said once for all of a batch's entries


def batches(items: Iterable[tuple[str, Disclosure | None]]) -> Iterator[p.DisclosureBatchV1]:
    """The disclosures of ``(subject, disclosure)`` pairs as batch events: one per discloser and set
    of registries, of at most ``BATCH_ENTRIES`` entries, in the order given. Each batch is
    validated whole, its entries with it (a model per entry, then the batch, cost three times as much)."""
    groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for subject, d in items:
        if d is not None:
            entry = {k: v for k, v in d.items() if k not in _BATCH_FIELDS}
            entry["subject"] = subject
            groups.setdefault((d["discloser"], tuple(d["record_at"])), []).append(entry)
    for (discloser, record_at), entries in groups.items():
        for start in range(0, len(entries), BATCH_ENTRIES):
            yield p.DisclosureBatchV1.model_validate(
                {
                    "batch_id": uuid.uuid4(),
                    "record_at": list(record_at),
                    "discloser": discloser,
                    "entries": entries[start : start + BATCH_ENTRIES],
                }
            )


async def publish_batched(
    conn: asyncpg.Connection, source: str, items: Sequence[tuple[str, Disclosure | None]]
) -> None:
    """``publish`` for a party that discloses many people's data in one unit of work (the exchange
    routing a consumer's batch, verification chaining its checks): one ``disclosure.batch.v1`` per
    set of registries instead of an event per disclosure. Each registry still appends every entry to its subject-access log.

    The batch is keyed by its own id: it is no one person's event."""
    async with batched(conn):
        for data in batches(items):
            await queue_event(
                conn,
                event_type=BATCH_TYPE,
                source=source,
                subject=data.batch_id.hex,
                data=data,
                numbered_in=source + SEQUENCE_SPACE,
            )
