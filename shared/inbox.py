"""The inbox: which events each consumer has applied, so a redelivery changes nothing.

A consumer records an event in the same transaction as its effect (``shared.consumer``); a
rebuild of a projection clears its consumer's rows first (``forget_applied``).
"""

from __future__ import annotations

import uuid

import asyncpg

# How a batch's rows are read by key here (the inbox, and the services' own tables that follow it):
# each key of the array probes the table's unique index, in a LATERAL subquery that its LIMIT keeps
# the planner from flattening into a join. A plain join lets the planner choose, and on a young
# table it chose badly: with no statistics yet (autovacuum analyzes a table a minute or more after
# it filled), PostgreSQL took ``jurisdiction = $1`` for selective and hash-joined the array to every
# row of the jurisdiction, ~4 ms for 32 keys against 10,000 people; before that, ``= ANY($1)``
# under a generic plan made while the table was small compared every row with every key. A probe
# per key costs the same on a table of a hundred rows or of a hundred million (docs/scale.md).
BY_KEY = "one index probe per key (LATERAL ... LIMIT 1)"


async def already_applied(
    conn: asyncpg.Connection, consumer: str, event_ids: set[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``event_ids`` ``consumer`` has applied, in one round trip.

    Each id is looked up in the key's index (``BY_KEY``), whatever the planner's statistics say."""
    if not event_ids:
        return set()
    rows = await conn.fetch(
        """SELECT i.event_id FROM unnest($2::uuid[]) AS u(event_id)
             CROSS JOIN LATERAL (SELECT event_id FROM inbox WHERE consumer = $1 AND event_id = u.event_id
                                  LIMIT 1) i""",
        consumer,
        list(event_ids),
    )
    return {r["event_id"] for r in rows}


async def record(conn: asyncpg.Connection, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Record events as applied by ``consumer``, in one statement; the ids that were not yet."""
    if not event_ids:
        return set()
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id) SELECT $1, e FROM unnest($2::uuid[]) AS e
           ON CONFLICT DO NOTHING RETURNING event_id""",
        consumer,
        event_ids,
    )
    return {r["event_id"] for r in rows}


async def record_cleared(conn: asyncpg.Connection, consumer: str, event_ids: list[uuid.UUID]) -> None:
    """Record distinct events in an inbox ``forget_applied`` just cleared (a rebuild), by COPY."""
    await conn.copy_records_to_table(
        "inbox", records=[(consumer, i) for i in event_ids], columns=["consumer", "event_id"]
    )


async def forget_applied(conn: asyncpg.Connection, consumer: str) -> int:
    """Clear a consumer's inbox so that a rebuild applies every event again; returns how many.

    The inbox is locked first (until the caller's transaction ends): the running service's
    consumer then waits instead of recording an event in the inbox of a projection being
    cleared, and the lock order (inbox, then the projection's tables) cannot deadlock with it.
    """
    await conn.execute("LOCK TABLE inbox IN EXCLUSIVE MODE")
    result = await conn.execute("DELETE FROM inbox WHERE consumer = $1", consumer)
    return int(result.split()[-1])
