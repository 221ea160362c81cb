"""SQL of delivery: per-subject ordering (progress, parked events) and notification re-sends."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg


async def advance(conn: asyncpg.Connection, subject: str, source: str, sequence: int) -> tuple[int, int]:
    """Lock (subject, source) and, when ``sequence`` is next and nothing waits, record it as applied.

    Returns (last applied sequence, events waiting) after the statement: the common case (the
    event is next) costs one round trip.
    """
    row = await conn.fetchrow(
        """INSERT INTO sequence_progress AS p (subject, source, last_sequence)
           VALUES ($1, $2, CASE WHEN $3 = 1 THEN 1 ELSE 0 END)
           ON CONFLICT (subject, source) DO UPDATE SET last_sequence =
               CASE WHEN p.last_sequence = $3 - 1 AND p.parked = 0 THEN $3 ELSE p.last_sequence END
           RETURNING last_sequence, parked""",
        subject,
        source,
        sequence,
    )
    return int(row["last_sequence"]), int(row["parked"])


async def lock_progress(conn: asyncpg.Connection, subject: str, source: str) -> int:
    """The last in-order sequence of (subject, source), row-locked until the transaction ends."""
    last, _ = await advance(conn, subject, source, 0)  # sequence 0 is never next: a pure lock
    return last


async def set_progress(conn: asyncpg.Connection, subject: str, source: str, last: int) -> None:
    await conn.execute(
        """UPDATE sequence_progress SET last_sequence = greatest(last_sequence, $3)
           WHERE subject = $1 AND source = $2""",
        subject,
        source,
        last,
    )


async def park(
    conn: asyncpg.Connection,
    subject: str,
    source: str,
    sequence: int,
    event_id: uuid.UUID,
    value: bytes,
    deadline: dt.datetime,
) -> None:
    await conn.execute(
        """WITH parked AS (INSERT INTO parked_events (subject, source, sequence, event_id, value, deadline)
                           VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING RETURNING 1)
           UPDATE sequence_progress SET parked = parked + (SELECT count(*) FROM parked)
           WHERE subject = $1 AND source = $2""",
        subject,
        source,
        sequence,
        event_id,
        value,
        deadline,
    )


async def unpark(conn: asyncpg.Connection, subject: str, source: str, sequence: int) -> bytes | None:
    value = await conn.fetchval(
        """WITH gone AS (DELETE FROM parked_events WHERE subject = $1 AND source = $2 AND sequence = $3
                         RETURNING value),
                counted AS (UPDATE sequence_progress SET parked = parked - (SELECT count(*) FROM gone)
                            WHERE subject = $1 AND source = $2)
           SELECT value FROM gone""",
        subject,
        source,
        sequence,
    )
    return bytes(value) if value is not None else None


async def first_parked(conn: asyncpg.Connection, subject: str, source: str) -> int | None:
    value = await conn.fetchval(
        "SELECT min(sequence) FROM parked_events WHERE subject = $1 AND source = $2", subject, source
    )
    return int(value) if value is not None else None


async def expired_gaps(conn: asyncpg.Connection, limit: int = 100) -> list[tuple[str, str]]:
    """(subject, source) pairs with a parked event past its deadline."""
    rows = await conn.fetch(
        """SELECT DISTINCT subject, source FROM parked_events WHERE deadline < now() LIMIT $1""", limit
    )
    return [(r["subject"], r["source"]) for r in rows]


async def due_for_resend(
    conn: asyncpg.Connection, max_attempts: int, limit: int = 500
) -> list[asyncpg.Record]:
    """Pending notifications whose next attempt is due; other sweepers skip the locked ones."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT * FROM notifications
           WHERE state = 'pending' AND next_attempt_at <= now() AND attempts < $1 AND deadline > now()
           ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        max_attempts,
        limit,
    )
    return rows


async def mark_resent(
    conn: asyncpg.Connection, notification_id: uuid.UUID, next_at: dt.datetime | None, sent: bool = True
) -> None:
    """Count a send (``sent``) and set the next attempt (None: no more)."""
    await conn.execute(
        "UPDATE notifications SET attempts = attempts + $3, next_attempt_at = $2 WHERE id = $1",
        notification_id,
        next_at,
        int(sent),
    )


async def lock_progress_of(
    conn: asyncpg.Connection, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """Lock many (subject, source) pairs in a fixed order, created where new (nothing applied);
    each one's (last applied sequence, events waiting)."""
    pairs = sorted(set(pairs))
    rows = await conn.fetch(
        """INSERT INTO sequence_progress AS p (subject, source, last_sequence)
           SELECT s, src, 0 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, src, i) ORDER BY i
           ON CONFLICT (subject, source) DO UPDATE SET last_sequence = p.last_sequence
           RETURNING subject, source, last_sequence, parked""",
        [s for s, _ in pairs],
        [src for _, src in pairs],
    )
    return {(r["subject"], r["source"]): (int(r["last_sequence"]), int(r["parked"])) for r in rows}


async def set_progress_of(conn: asyncpg.Connection, progress: dict[tuple[str, str], int]) -> None:
    """``set_progress`` for many pairs at once."""
    if not progress:
        return
    await conn.execute(
        """UPDATE sequence_progress p SET last_sequence = greatest(p.last_sequence, u.last)
           FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(subject, source, last)
           WHERE p.subject = u.subject AND p.source = u.source""",
        [s for s, _ in progress],
        [src for _, src in progress],
        list(progress.values()),
    )
