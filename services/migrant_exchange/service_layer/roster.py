"""Clearing the exchange roster for a rebuild (``exchangectl replay exchange-roster``).

The roster is the exchange's projection of the registries' events; a rebuild empties it and
its consumer's inbox here, then applies every event again through the exchange's consumer
(its bulk ``handlers.rebuild_roster``, or its handler one event at a time).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.migrant_exchange.adapters import repository as repo
from shared.consumer import forget_applied


async def clear(conn: asyncpg.Connection, consumer: str) -> dict[str, Any]:
    """Empty the roster and the consumer's inbox (in the caller's transaction)."""
    inbox = await forget_applied(conn, consumer)  # the inbox lock first: see forget_applied
    return {**{t: "truncated" for t in await repo.clear_roster(conn)}, "inbox": inbox}
