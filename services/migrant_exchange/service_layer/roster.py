"""The exchange's roster: cleared and rebuilt from the beginning (``exchangectl replay exchange-roster``).

The roster is the exchange's projection of the registries' events; a rebuild empties it and its
consumer's inbox here (``clear``), then applies every event again through the exchange's
consumer: in one go (``rebuild_roster``), or through its handler one event at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.domain import routing
from services.migrant_exchange.domain.routing import Whereabouts
from services.migrant_exchange.service_layer.messagebus import ROUTED
from shared.events.envelope import Envelope
from shared.inbox import forget_applied


async def clear(conn: asyncpg.Connection, consumer: str) -> dict[str, Any]:
    """Empty the roster and the consumer's inbox (in the caller's transaction)."""
    inbox = await forget_applied(conn, consumer)  # the inbox lock first: see forget_applied
    return {**{t: "truncated" for t in await repo.clear_roster(conn)}, "inbox": inbox}


async def rebuild_roster(conn: asyncpg.Connection, events: Iterable[Envelope[Any]]) -> None:
    """The roster from every event at once, for a rebuild from the beginning into an emptied
    roster: what ``handlers.route_vital_event`` saves after each event in turn, folded in memory and
    written with COPY. Routing is not redone: notifications and feedback are rows of their own,
    which a roster rebuild keeps (``exchangectl replay exchange-roster --event-by-event`` routes
    again, sending what is missing)."""
    roster: dict[str, list[Any]] = {}  # subject -> [whereabouts, moves, last event time]
    for event in events:
        if event.producer is None or event.type not in ROUTED:
            continue  # the handler table's: only events it routes (a registry's, not feedback) touch the roster
        row = roster.get(event.subject)
        after = routing.after_event(
            row[0] if row else Whereabouts(None, None),
            event.type,
            event.data.model_dump(mode="json"),
            Whereabouts(event.origin, event.destination),
            event.time,
        )
        moved = int(event.type.startswith("migration."))
        if row is None:
            roster[event.subject] = [after, moved, event.time]
        else:
            row[0], row[1], row[2] = after, row[1] + moved, max(row[2], event.time)
    await repo.copy_roster(
        conn, [(s, w.hukou, w.residence, w.as_of, moves, last) for s, (w, moves, last) in roster.items()]
    )
