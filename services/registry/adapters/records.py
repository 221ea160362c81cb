"""SQL of corrections, certificates' lifecycle and the subject-access log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

# record type -> (table, key column, key type). Column names below are whitelisted, never caller text.
RECORD_TABLES: dict[str, tuple[str, str, type]] = {
    "person": ("persons", "id_number", str),
    "migration": ("migrations", "id", uuid.UUID),
    "marriage": ("marriages", "id", uuid.UUID),
    "birth": ("births", "id", uuid.UUID),
    "pregnancy": ("pregnancies", "id", uuid.UUID),
    "certificate": ("certificates", "number", str),
}


def _key(record_type: str, record_id: str) -> tuple[str, str, object] | None:
    table, column, kind = RECORD_TABLES[record_type]
    try:
        return table, column, kind(record_id)
    except ValueError:
        return None


async def get_record(
    conn: asyncpg.Connection, jurisdiction: str, record_type: str, record_id: str
) -> asyncpg.Record | None:
    key = _key(record_type, record_id)
    if key is None:
        return None
    table, column, value = key
    return await conn.fetchrow(
        f"SELECT * FROM {table} WHERE jurisdiction = $1 AND {column} = $2 FOR UPDATE", jurisdiction, value
    )


async def events_of_record(
    conn: asyncpg.Connection, jurisdiction: str, record_type: str, record_id: str, row: asyncpg.Record
) -> set[uuid.UUID]:
    """The events that made or corrected a record: what a correction may name."""
    known = {e for e in (row.get("event_id"), row.get("source_event_id")) if e is not None}
    rows = await conn.fetch(
        """SELECT event_id, source_event_id FROM corrections
           WHERE jurisdiction = $1 AND record_type = $2 AND record_id = $3""",
        jurisdiction,
        record_type,
        record_id,
    )
    for r in rows:
        known |= {e for e in (r["event_id"], r["source_event_id"]) if e is not None}
    return known


async def update_record(
    conn: asyncpg.Connection,
    jurisdiction: str,
    record_type: str,
    record_id: str,
    changes: dict[str, Any],
    allowed: frozenset[str],
) -> None:
    key = _key(record_type, record_id)
    assert key is not None
    await set_fields(conn, key[0], key[1], jurisdiction, key[2], changes, allowed)


async def set_fields(
    conn: asyncpg.Connection,
    table: str,
    column: str,
    jurisdiction: str,
    key: object,
    changes: dict[str, Any],
    allowed: frozenset[str],
) -> None:
    """Set some fields of one record; ``table`` and ``column`` are ours, field names checked here."""
    if not changes:
        return
    fields = sorted(changes)
    if not set(fields) <= allowed:  # the domain checked it; never build SQL from other names
        raise ValueError("field not correctable")
    assignments = ", ".join(f"{f} = ${i + 3}" for i, f in enumerate(fields))
    await conn.execute(
        f"UPDATE {table} SET {assignments} WHERE jurisdiction = $1 AND {column} = $2",
        jurisdiction,
        key,
        *[changes[f] for f in fields],
    )


async def insert_correction(
    conn: asyncpg.Connection,
    jurisdiction: str,
    c: dict[str, Any],
    previous: dict[str, Any],
    source_division: str,
    source_event_id: uuid.UUID | None = None,
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO corrections (id, jurisdiction, corrected_event_id, record_type, record_id, changes,
                                    previous, reason, source_division, source_event_id, event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$10) ON CONFLICT DO NOTHING RETURNING true""",
        c["correction_id"],
        jurisdiction,
        c["corrected_event_id"],
        c["record_type"],
        c["record_id"],
        c["changes"],
        previous,
        c["reason"],
        source_division,
        source_event_id,
    )
    return bool(inserted)


async def set_correction_event(
    conn: asyncpg.Connection, jurisdiction: str, correction_id: uuid.UUID, event_id: uuid.UUID
) -> None:
    await conn.execute(
        "UPDATE corrections SET event_id = $3 WHERE jurisdiction = $1 AND id = $2",
        jurisdiction,
        correction_id,
        event_id,
    )


async def get_certificate(conn: asyncpg.Connection, number: str, lock: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM certificates WHERE number = $1" + (" FOR UPDATE" if lock else ""), number
    )


async def revoke_certificate(conn: asyncpg.Connection, number: str, when: dt.date, reason: str) -> bool:
    return bool(
        await conn.fetchval(
            """UPDATE certificates SET revoked_on = $2, revocation_reason = $3
               WHERE number = $1 AND revoked_on IS NULL RETURNING true""",
            number,
            when,
            reason,
        )
    )


async def set_revocation_event(conn: asyncpg.Connection, number: str, event_id: uuid.UUID) -> None:
    await conn.execute("UPDATE certificates SET revocation_event_id = $2 WHERE number = $1", number, event_id)


async def certificates_of(conn: asyncpg.Connection, jurisdiction: str, holder: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT number AS certificate_number, issued_on, valid_until, revoked_on, status_index
           FROM certificates WHERE jurisdiction = $1 AND holder_id_number = $2 ORDER BY issued_on""",
        jurisdiction,
        holder,
    )
    return [dict(r) for r in rows]


async def disclosures(conn: asyncpg.Connection, subject: str, limit: int) -> list[dict[str, Any]]:
    """The subject-access log of one person, newest first."""
    rows = await conn.fetch(
        """SELECT seq, at, client_id, action, purpose, detail FROM audit_log
           WHERE subject = $1 ORDER BY seq DESC LIMIT $2""",
        subject,
        limit,
    )
    return [dict(r) for r in rows]


async def shared_events(conn: asyncpg.Connection, subject: str, limit: int) -> list[dict[str, Any]]:
    """Events about a subject this registry published, with the jurisdictions they were addressed to."""
    rows = await conn.fetch(
        """SELECT created_at, event_type, event_id, convert_from(value, 'UTF8')::jsonb AS doc FROM outbox
           WHERE key = $1 AND event_type <> 'exchange.feedback.v1' ORDER BY id DESC LIMIT $2""",
        subject,
        limit,
    )
    out = []
    for r in rows:
        doc = r["doc"]
        producer = str(doc.get("source", "")).rsplit("/", 1)[-1]
        recipients = sorted({d for d in (doc.get("origin"), doc.get("destination")) if d and d != producer})
        if recipients:
            out.append(
                {
                    "seq": None,
                    "at": r["created_at"],
                    "client_id": f"registry-{producer}",
                    "action": "event.shared",
                    "purpose": None,
                    "detail": {
                        "event_type": r["event_type"],
                        "event_id": str(r["event_id"]),
                        "recipients": recipients,
                    },
                }
            )
    return out
