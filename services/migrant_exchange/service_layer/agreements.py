"""Inter-jurisdiction agreements (双向协议) in the exchange's database: the file is authoritative."""

from __future__ import annotations

import asyncpg

from services.migrant_exchange.settings import ExchangeSettings
from shared import agreements


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
