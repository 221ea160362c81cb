"""The exchange tells a person's registries who received the person's data through it.

Two kinds of disclosure pass through the exchange: a notification addressed to a counterpart (the
real routing targets, a father's registries for a birth included), and the first pick-up of a
notification's payload over REST. Each is an entry of a ``disclosure.batch.v1`` (one per unit of
work and set of registries) for the producing registry and the person's origin and residence
(``shared.disclosures``). The exchange also
counts verification's disclosures of checked certificates for the verification rate.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from services.migrant_exchange.adapters import disclosures as repo
from services.migrant_exchange.domain.routing import Whereabouts
from shared import disclosures
from shared.auth import Client
from shared.events import payloads as p
from shared.events.envelope import Envelope
from shared.trust import EXCHANGE

SOURCE = "/exchange"
Told = tuple[str, disclosures.Disclosure | None]


def notified(event: Envelope[Any], n: dict[str, Any], where: Whereabouts) -> Told:
    """The disclosure of the notification ``n`` of ``event`` (its target's registry received it),
    for the producing registry and the person's origin and residence; its purpose by the event's
    type and the payload sent (a correction of a pregnancy serves maternal care, as the pregnancy)."""
    target = n["target_division"]
    return event.subject, disclosures.disclosure(
        record_at=[event.producer, where.hukou, where.residence],
        discloser=EXCHANGE,
        action="notification.sent",
        recipient=f"registry-{target}",
        recipient_division=target,
        purpose=disclosures.purpose_of(event.type, n["payload"]),
        event_type=event.type,
        event_id=event.id,
        notification_id=n["notification_id"],
    )


async def publish(conn: asyncpg.Connection, told: list[Told]) -> None:
    """One ``disclosure.batch.v1`` per set of registries for what a unit of work disclosed."""
    await disclosures.publish_batched(conn, SOURCE, told)


async def record_pickups(
    conn: asyncpg.Connection, client: Client, shown: list[dict[str, Any]]
) -> dict[uuid.UUID, uuid.UUID]:
    """The notifications whose payload this client received for the first time: told, once each.
    Returns their disclosure ids by notification id."""
    payloads = {n["notification_id"]: n["payload"] for n in shown if n.get("payload") is not None}
    ids = list(payloads)
    if client.kind != "jurisdiction" or not ids:
        return {}
    told: list[Told] = []
    for row in await repo.mark_fetched(conn, ids):
        where = await repo.whereabouts(conn, row["subject"])
        told.append(
            (
                row["subject"],
                disclosures.disclosure(
                    record_at=[row["source_division"], where.hukou, where.residence],
                    discloser=EXCHANGE,
                    action="notification.fetched",
                    recipient=client.client_id,
                    recipient_division=row["target_division"],
                    purpose=disclosures.purpose_of(row["event_type"], payloads[row["id"]]),
                    disclosed_at=row["fetched_at"],
                    event_type=row["event_type"],
                    event_id=row["event_id"],
                    notification_id=row["id"],
                ),
            )
        )
    await publish(conn, told)
    return {
        d["notification_id"]: d["disclosure_id"]
        for _, d in told
        if d is not None and d.get("notification_id")
    }


async def count_verification(conn: asyncpg.Connection, event: Envelope[Any]) -> None:
    """Certificate verifications (verification's disclosures, one or a batch), for the verification rate."""
    data = event.data
    told: list[p.DisclosureRecordedV1] | list[p.DisclosureEntryV1] = (
        data.entries if isinstance(data, p.DisclosureBatchV1) else [data]
    )
    checks = [
        (d.disclosure_id, d.certificate_number, d.issuer, d.recipient_division, d.result, d.disclosed_at)
        for d in told
        if d.action == "certificate.verified" and d.certificate_number and d.issuer and d.result
    ]
    if checks:
        await repo.record_verifications(conn, checks)
