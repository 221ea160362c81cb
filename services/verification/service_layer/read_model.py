"""Clearing the read model for a rebuild: from the registries' outboxes, or from the broker.

``exchangectl replay verification`` is the one command for both. From the outboxes, the read
model and its consumer's inbox are emptied here, then every event is applied again through
the service's own consumer. From the broker (``--from-broker``), the read model is emptied
and a new replay generation begins: the consumer group and inbox name carry it
(``verification-g2``), so on its next start the service reads every topic from the beginning
with no offset surgery on the broker.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.verification.adapters import repository as repo
from services.verification.settings import VerificationSettings
from shared.inbox import forget_applied


async def clear(conn: asyncpg.Connection, consumer: str) -> dict[str, Any]:
    """Empty certificates, revocations and the consumer's inbox (in the caller's transaction)."""
    inbox = await forget_applied(conn, consumer)  # the inbox lock first: see forget_applied
    return {**{t: "truncated" for t in await repo.clear_read_model(conn)}, "inbox": inbox}


async def new_generation(conn: asyncpg.Connection, settings: VerificationSettings) -> str:
    """Empty the read model and start a new replay generation; returns its consumer name.

    Keys learned from registries' JWKS are kept (the refresher re-confirms them); keys learned
    from events, certificates, revocations and corrections come back with the replay.
    """
    old, new = await repo.next_generation(conn)
    await clear(conn, settings.consumer_name(old))
    return settings.consumer_name(new)
