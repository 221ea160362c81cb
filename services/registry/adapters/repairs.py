"""SQL of repairs: a record inserted whole, a duplicate retired, this registry's own log read back."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson

from services.registry.adapters import (
    births,
    certificates,
    marriages,
    migrations,
    persons,
    pregnancies,
    records,
)
from services.registry.adapters.records import RECORD_TABLES, Made
from shared.events.catalog import DLQ_SUFFIX


async def held(conn: asyncpg.Connection, here: str, kind: str, record_id: str) -> dict[str, Any] | None:
    """A record we hold by its exchange key (locked), with a certificate's fields named as in its
    events: our own from our register, another issuer's from our copy."""
    row = await records.get_record(conn, here, kind, record_id)
    if kind != "certificate":
        return None if row is None else dict(row)
    if row is not None:
        return {**dict(row), "certificate_number": row["number"], "issuer": here, "source_division": here}
    copy = await certificates.get_copy(conn, here, record_id)
    return None if copy is None else {**dict(copy), "certificate_number": copy["number"]}


async def update_held(
    conn: asyncpg.Connection,
    here: str,
    kind: str,
    record_id: str,
    changes: dict[str, Any],
    allowed: frozenset[str],
) -> None:
    if kind == "certificate":  # only a copy follows another's word: the issuer's register is its own
        await certificates.update_copy(conn, here, record_id, changes)
    else:
        await records.update_record(conn, here, kind, record_id, changes, allowed)


async def insert_whole(
    conn: asyncpg.Connection,
    here: str,
    kind: str,
    w: dict[str, Any],
    subject: str,
    source: str,
    source_event_id: uuid.UUID | None,
    event_id: uuid.UUID | None = None,
) -> bool:
    """Insert a whole record of ``kind``; False when a record with its key is held already.
    ``event_id``: our own event that made it (our record, sent back by a counterpart)."""
    made = Made(source, source_event_id, event_id)
    if kind == "person":
        return await persons.insert_person(conn, here, w, subject, made)
    if kind == "certificate":
        return await certificates.insert_copy(conn, here, w, source, source_event_id)
    if kind == "migration":
        done = await migrations.insert_migration(conn, here, w, w["kind"], made)
        if done:
            await migrations.place_restored(conn, here, w["migration_id"])
        return done
    if kind == "birth":
        return await births.insert_birth(conn, here, w, made)
    if kind == "marriage":
        done = await marriages.insert_marriage(conn, here, {**w, "registered_in": source}, made)
        if done and w.get("dissolution_date") is not None:
            await marriages.dissolve_marriage(
                conn, here, w["marriage_id"], w["dissolution_date"], w["dissolution_reason"], source
            )
        return done
    done = await pregnancies.insert_pregnancy(conn, here, w, made)
    if done and w.get("closed_on") is not None:
        await pregnancies.close_pregnancy(conn, here, w["pregnancy_id"], w["closed_on"], w["outcome"], source)
    return done


async def delete_record(conn: asyncpg.Connection, here: str, kind: str, key: object) -> asyncpg.Record | None:
    """Take a record out of this jurisdiction's records; returns it as it was."""
    table, column, _ = RECORD_TABLES[kind]  # whitelisted: never caller text
    return await conn.fetchrow(
        f"DELETE FROM {table} WHERE jurisdiction = $1 AND {column} = $2 RETURNING *", here, key
    )


# The outbox also queues the copy of every message this registry's consumers dead-lettered, for
# ``<topic>.dlq``, under the key and type that message claimed and with its value as it came
# (``shared.dead_letters.keep``): someone else's refused message, possibly a forgery naming this
# registry as its source. It is never one of our own events.
_NOT_A_COPY = f"topic NOT LIKE '%{DLQ_SUFFIX}'"


async def own_event(
    conn: asyncpg.Connection, here: str, event_id: uuid.UUID
) -> tuple[str, dict[str, Any]] | None:
    """The type and ``data`` of an event this jurisdiction published itself, from its outbox (the
    durable log; ``_NOT_A_COPY``)."""
    value = await conn.fetchval(f"SELECT value FROM outbox WHERE event_id = $1 AND {_NOT_A_COPY}", event_id)
    if value is None:
        return None
    doc = orjson.loads(bytes(value))
    if doc.get("source") != f"/registry/{here}":
        return None
    data: dict[str, Any] = doc.get("data") or {}
    return str(doc.get("type")), data


async def own_corrected_fields(conn: asyncpg.Connection, here: str, kind: str, record_id: str) -> set[str]:
    """The fields of a record this jurisdiction corrected itself since it registered it."""
    rows = await conn.fetch(
        """SELECT changes FROM corrections
           WHERE jurisdiction = $1 AND record_type = $2 AND record_id = $3 AND source_division = $1""",
        here,
        kind,
        record_id,
    )
    return {f for r in rows for f in r["changes"]}


async def own_events_of(conn: asyncpg.Connection, subject: str, event_type: str) -> list[dict[str, Any]]:
    """The ``data`` of the events of one type this registry published about a subject, oldest first
    (``_NOT_A_COPY``)."""
    rows = await conn.fetch(
        f"SELECT value FROM outbox WHERE key = $1 AND event_type = $2 AND {_NOT_A_COPY} ORDER BY id",
        subject,
        event_type,
    )
    return [dict(orjson.loads(bytes(r["value"])).get("data") or {}) for r in rows]
