"""The few reads the operator commands make directly: audit trail, dead letters, outbox events.

Every write goes through the services' own use cases (the registry's bulk import and
counterpart records, each projection's clearing, the signing keys, the services' consumers)
or shared functions (shared.audit, shared.dead_letters); what is here only reads.
"""

from __future__ import annotations

import datetime as dt

import asyncpg


async def audit_entries(conn: asyncpg.Connection, subject: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT seq, at, client_id, action, purpose, detail FROM audit_log WHERE subject = $1 ORDER BY seq""",
            subject,
        )
    )


async def audit_count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM audit_log"))


async def dead_letters(conn: asyncpg.Connection, include_replayed: bool, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT id, consumer, topic, partition, "offset", reason, created_at, replayed_at FROM dead_letters
           WHERE $1 OR replayed_at IS NULL ORDER BY id LIMIT $2""",
            include_replayed,
            limit,
        )
    )


async def dead_letter(conn: asyncpg.Connection, dead_letter_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM dead_letters WHERE id = $1", dead_letter_id)


async def outbox_events(
    conn: asyncpg.Connection, topics: list[str], since: dt.datetime | None
) -> list[asyncpg.Record]:
    """Events this database produced for ``topics``, oldest first (published rows are kept: the
    outbox is the log).

    Selected by topic, not by type: the outbox also queues the copy of every message this
    service's consumers dead-lettered, for ``<topic>.dlq``, under whatever type the message's own
    ``ce_type`` header named (``shared.dead_letters.keep``). Such a copy is someone else's refused
    message, often forged or malformed, never an event of this database's."""
    return list(
        await conn.fetch(
            """SELECT id, event_id, created_at, value FROM outbox
           WHERE topic = ANY($1::text[]) AND ($2::timestamptz IS NULL OR created_at >= $2)
           ORDER BY id""",
            topics,
            since,
        )
    )
