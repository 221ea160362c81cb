"""Inter-jurisdiction agreements (双向协议) in the exchange's database: the file is authoritative."""

from __future__ import annotations

import dataclasses

import asyncpg

from services.migrant_exchange.domain.reconcile import Difference
from services.migrant_exchange.domain.routing import RECORD_EVENTS
from services.migrant_exchange.settings import ExchangeSettings
from shared import agreements
from shared.events.upcasting import current_type


def configured(settings: ExchangeSettings) -> tuple[agreements.Agreement, ...]:
    """The agreements the exchange runs under, validated (AgreementError names what is wrong)."""
    return agreements.load(settings.agreements_file, settings.environment)


async def load_agreements(conn: asyncpg.Connection, settings: ExchangeSettings) -> int:
    """Replace the agreements table with the file's agreements, in one transaction.

    The table holds exactly what the file says: an agreement removed from the file stops
    flowing once the exchange restarts; nothing is kept from a previous start."""
    rows = [a.row() for a in configured(settings)]
    async with conn.transaction():
        await conn.execute("LOCK TABLE agreements IN EXCLUSIVE MODE")  # replicas starting together
        await conn.execute("DELETE FROM agreements")
        await conn.executemany(
            """INSERT INTO agreements (division_a, division_b, event_types, deadline_seconds, visible_fields)
               VALUES ($1, $2, $3, $4, $5)""",
            [
                (
                    r["division_a"],
                    r["division_b"],
                    r["event_types"],
                    r["deadline_seconds"] or settings.feedback_deadline_seconds,
                    r["visible_fields"],
                )
                for r in rows
            ],
        )
    return len(rows)


def as_agreed(settings: ExchangeSettings, a: str, b: str, found: list[Difference]) -> list[Difference]:
    """Reconciliation's differences less what the pair's agreement explains: a field the
    agreement withholds from the side holding the copy is absent there by contract, not drift,
    and repairing it would send it (a conflict in that field alone is no case at all)."""
    agreement = agreements.between(configured(settings), a, b)
    if agreement is None:
        return found
    out = []
    for d in found:
        owners = {o for o in dict(d.detail.get("owner_at") or {}).values() if o}
        event_type = RECORD_EVENTS.get(d.record_kind)
        if d.kind != "field_conflict" or event_type is None or len(owners) != 1:
            out.append(d)
            continue
        copy_side = b if owners == {a} else a if owners == {b} else None
        hidden = agreement.withheld(copy_side, current_type(event_type)) if copy_side else frozenset()
        kept = tuple(f for f in d.fields if f not in hidden)
        if kept:
            out.append(dataclasses.replace(d, fields=kept))
    return out
