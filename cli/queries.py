"""The few reads the operator commands make directly (audit trail, dead letters, projection resets).

Writes go through the services' own functions (shared.audit, shared.consumer and
shared.dead_letters, the registry's signing-key use cases, the services' handlers); what is here only reads, or clears a projection before
it is rebuilt from the outbox.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

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
    conn: asyncpg.Connection, event_types: list[str], since: dt.datetime | None
) -> list[asyncpg.Record]:
    """Events this database produced, oldest first (published rows are kept: the outbox is the log)."""
    return list(
        await conn.fetch(
            """SELECT id, event_id, created_at, value FROM outbox
           WHERE event_type = ANY($1::text[]) AND ($2::timestamptz IS NULL OR created_at >= $2)
           ORDER BY id""",
            event_types,
            since,
        )
    )


async def forget_applied(conn: asyncpg.Connection, consumer: str) -> int:
    """Clear a consumer's inbox so that a rebuild applies every event again."""
    result = await conn.execute("DELETE FROM inbox WHERE consumer = $1", consumer)
    return int(result.split()[-1])


async def truncate(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Empty those of the tables that exist (a projection's schema grows with its service)."""
    present = [t for t in tables if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", t)]
    if present:
        await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in present))
    return present


async def delete_counterpart_records(conn: asyncpg.Connection, served: list[str]) -> dict[str, Any]:
    """Rows a registry holds only because a counterpart told it (rebuilt from notifications)."""
    out: dict[str, Any] = {}
    for table in ("births", "migrations", "persons"):
        result = await conn.execute(
            f"DELETE FROM {table} WHERE jurisdiction = ANY($1::text[]) AND source_division <> jurisdiction",
            served,
        )
        out[table] = int(result.split()[-1])
    return out
