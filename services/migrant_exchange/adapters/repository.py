"""All SQL of the exchange: roster, agreements, notifications, who holds which record."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson

from services.migrant_exchange.domain.routing import Whereabouts


async def whereabouts_of(conn: asyncpg.Connection, subjects: list[str]) -> list[Whereabouts]:
    """Whereabouts of related people (no lock: they are read, not changed)."""
    return list((await whereabouts_by_subject(conn, subjects)).values())


async def whereabouts(conn: asyncpg.Connection, subject: str) -> Whereabouts:
    """One subject's whereabouts, the row locked until the transaction ends."""
    return (await whereabouts_locked(conn, [subject])).get(subject, Whereabouts(None, None))


async def save_whereabouts(
    conn: asyncpg.Connection, subject: str, w: Whereabouts, moved: bool, at: dt.datetime
) -> None:
    await save_roster(conn, [(subject, w, int(moved), at)])


async def copy_roster(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Bulk load into an emptied roster (a rebuild): (subject, hukou, residence, as_of, moves, last_event_at)."""
    await conn.copy_records_to_table(
        "roster",
        records=rows,
        columns=[
            "subject",
            "hukou_division",
            "residence_division",
            "residence_as_of",
            "moves",
            "last_event_at",
        ],
    )


async def agreement(conn: asyncpg.Connection, a: str, b: str) -> asyncpg.Record | None:
    """The agreement between two jurisdictions, the most specific first ('*' is a wildcard)."""
    return await conn.fetchrow(
        """SELECT * FROM agreements
           WHERE (division_a IN ($1, '*') AND division_b IN ($2, '*')) OR (division_a IN ($2, '*') AND division_b IN ($1, '*'))
           ORDER BY (division_a = '*')::int + (division_b = '*')::int LIMIT 1""",
        a,
        b,
    )


async def insert_notification(conn: asyncpg.Connection, n: dict[str, Any]) -> bool:
    """False when the event was already routed to that target."""
    return n["notification_id"] in await insert_notifications(conn, [n])


# A certificate's holders go by its number (``certificate_holders``, 0028); the other records' by
# their uuid (``record_holders``, 0026).
CERTIFICATE = "certificate"


async def add_holders(conn: asyncpg.Connection, holders: Iterable[tuple[str, str, str]]) -> None:
    """Record who holds which record: (record kind, record id, division); known ones are kept."""
    rows = sorted(set(holders))
    records = [r for r in rows if r[0] != CERTIFICATE]
    certificates = [(key, division) for kind, key, division in rows if kind == CERTIFICATE]
    if records:
        await conn.execute(
            """INSERT INTO record_holders (record_type, record_id, division)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[]) ON CONFLICT DO NOTHING""",
            [kind for kind, _, _ in records],
            [uuid.UUID(key) for _, key, _ in records],
            [division for _, _, division in records],
        )
    if certificates:
        await conn.execute(
            """INSERT INTO certificate_holders (number, division)
               SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING""",
            [number for number, _ in certificates],
            [division for _, division in certificates],
        )


async def holders_of(conn: asyncpg.Connection, kind: str, key: str) -> set[str]:
    """Who holds this record."""
    if kind == CERTIFICATE:
        rows = await conn.fetch("SELECT division FROM certificate_holders WHERE number = $1", key)
        return {r["division"] for r in rows}
    record_id = _record_id(key)
    if record_id is None:
        return set()
    rows = await conn.fetch(
        "SELECT division FROM record_holders WHERE record_type = $1 AND record_id = $2", kind, record_id
    )
    return {r["division"] for r in rows}


async def holders_of_many(
    conn: asyncpg.Connection, records: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], set[str]]:
    """Who holds each of these records (kind, key): one probe each, one statement per table."""
    records = list(records)
    keyed = sorted(
        {
            (kind, key, record_id)
            for kind, key in records
            if kind != CERTIFICATE and (record_id := _record_id(key))
        }
    )
    numbers = sorted({key for kind, key in records if kind == CERTIFICATE})
    found: dict[tuple[str, str], set[str]] = {}
    if keyed:
        rows = await conn.fetch(
            """SELECT h.record_type, h.record_id, h.division FROM record_holders h
               JOIN unnest($1::text[], $2::uuid[]) AS r(kind, id) ON h.record_type = r.kind AND h.record_id = r.id""",
            [kind for kind, _, _ in keyed],
            [record_id for _, _, record_id in keyed],
        )
        for r in rows:
            found.setdefault((r["record_type"], str(r["record_id"])), set()).add(r["division"])
    if numbers:
        rows = await conn.fetch(
            """SELECT h.number, h.division FROM certificate_holders h
               JOIN unnest($1::text[]) AS r(number) ON h.number = r.number""",
            numbers,
        )
        for r in rows:
            found.setdefault((CERTIFICATE, r["number"]), set()).add(r["division"])
    return found


async def take_holders(conn: asyncpg.Connection, kind: str, key: str) -> set[str]:
    """Who holds this record; the rows go (it is being closed: a pregnancy's closure is routed)."""
    record_id = _record_id(key)
    if record_id is None:
        return set()
    rows = await conn.fetch(
        "DELETE FROM record_holders WHERE record_type = $1 AND record_id = $2 RETURNING division",
        kind,
        record_id,
    )
    return {r["division"] for r in rows}


def _record_id(key: str) -> uuid.UUID | None:
    """A held record's key (a uuid); None for another (a correction may name any record)."""
    try:
        return uuid.UUID(key)
    except ValueError:
        return None


async def close_notification(
    conn: asyncpg.Connection,
    notification_id: uuid.UUID,
    from_division: str,
    outcome: str,
    conflicts: list[dict[str, Any]],
    reason: str | None,
) -> bool:
    """Record the feedback; only the addressee can close a notification, and only once.

    An applied notification's payload is purged: the exchange keeps a person's data only until
    the addressee has it (a conflict or refusal keeps it for the case that follows)."""
    answer = (notification_id, from_division, outcome, conflicts, reason)
    return notification_id in await close_notifications(conn, [answer])


async def mark_overdue(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Escalate pending notifications past their deadline; returns the ones escalated now."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE notifications SET state = 'overdue', overdue_at = now(), next_attempt_at = NULL
           WHERE state = 'pending' AND deadline < now()
           RETURNING id, target_division, source_division, event_type"""
    )
    return rows


# The changes to the count of overdue notifications (migration 0029), folded into it: each
# change is deleted once whoever else folds at the same time, and its delta added to the count.
FOLD_OVERDUE_COUNT = """WITH folded AS (DELETE FROM notifications_overdue_changes RETURNING delta)
    UPDATE notifications_overdue_count SET n = n + f.s
    FROM (SELECT sum(delta) AS s FROM folded) AS f WHERE f.s IS NOT NULL"""


async def fold_overdue_count(conn: asyncpg.Connection) -> None:
    """Fold the changes to the count of overdue notifications into it (the sweep, each round:
    the changes stay few, and the operations picture adds up only those)."""
    await conn.execute(FOLD_OVERDUE_COUNT)


async def list_notifications(
    conn: asyncpg.Connection,
    jurisdiction: str | None,
    state: str | None,
    limit: int,
    after: dt.datetime | None,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT * FROM notifications
           WHERE ($1::text IS NULL OR target_division = $1 OR source_division = $1)
             AND ($2::text IS NULL OR state = $2)
             AND ($4::timestamptz IS NULL OR created_at > $4)
           ORDER BY created_at LIMIT $3""",
        jurisdiction,
        state,
        limit,
        after,
    )
    return rows


async def get_notification(conn: asyncpg.Connection, notification_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM notifications WHERE id = $1", notification_id)


async def list_migrants(
    conn: asyncpg.Connection, origin: str | None, destination: str | None, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT subject, hukou_division, residence_division, moves, last_event_at FROM roster
           WHERE hukou_division IS DISTINCT FROM residence_division
             AND ($1::text IS NULL OR hukou_division = $1) AND ($2::text IS NULL OR residence_division = $2)
           ORDER BY last_event_at DESC LIMIT $3""",
        origin,
        destination,
        limit,
    )
    return rows


async def clear_roster(conn: asyncpg.Connection) -> list[str]:
    """Empty the roster (a rebuild refills it from the registries' events)."""
    await conn.execute("TRUNCATE roster")
    return ["roster"]


# --- a consumer's batch at once: the statements above for many rows each ---


# The roster rows of a batch's subjects (sorted by the callers), a probe of the key's index per
# subject (``shared.inbox.BY_KEY``). Filtered by ``subject = ANY($1)`` under a generic plan made while
# the roster was small, each row had been compared with each of up to 500 subjects (50 ms a batch at
# 10,000-30,000 subjects in the batches benchmark); joined to the array, the planner could still
# hash the whole roster.
def _roster_of_subjects(lock: str = "") -> str:
    return f"""unnest($1::text[]) AS u(subject)
               CROSS JOIN LATERAL (SELECT subject, hukou_division, residence_division, residence_as_of
                                     FROM roster WHERE subject = u.subject LIMIT 1 {lock}) r"""


async def whereabouts_locked(conn: asyncpg.Connection, subjects: list[str]) -> dict[str, Whereabouts]:
    """``whereabouts`` of many subjects, their rows locked in subject order; absent ones left out."""
    rows = await conn.fetch(
        f"""SELECT r.subject, r.hukou_division, r.residence_division, r.residence_as_of
              FROM {_roster_of_subjects("FOR UPDATE")} ORDER BY r.subject""",
        subjects,
    )
    return {
        r["subject"]: Whereabouts(r["hukou_division"], r["residence_division"], r["residence_as_of"])
        for r in rows
    }


async def whereabouts_by_subject(conn: asyncpg.Connection, subjects: list[str]) -> dict[str, Whereabouts]:
    """``whereabouts_of`` by subject (no lock); absent ones left out."""
    rows = await conn.fetch(
        f"""SELECT r.subject, r.hukou_division, r.residence_division, r.residence_as_of
              FROM {_roster_of_subjects()}""",
        subjects,
    )
    return {
        r["subject"]: Whereabouts(r["hukou_division"], r["residence_division"], r["residence_as_of"])
        for r in rows
    }


async def save_roster(
    conn: asyncpg.Connection, rows: list[tuple[str, Whereabouts, int, dt.datetime]]
) -> None:
    """``save_whereabouts`` for many subjects, each once: (subject, whereabouts, moves, last event time)."""
    await conn.execute(
        """INSERT INTO roster (subject, hukou_division, residence_division, residence_as_of, moves, last_event_at)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::timestamptz[])
           ON CONFLICT (subject) DO UPDATE SET hukou_division = EXCLUDED.hukou_division,
               residence_division = EXCLUDED.residence_division, residence_as_of = EXCLUDED.residence_as_of,
               moves = roster.moves + EXCLUDED.moves,
               last_event_at = greatest(roster.last_event_at, EXCLUDED.last_event_at), updated_at = now()""",
        [s for s, _, _, _ in rows],
        [w.hukou for _, w, _, _ in rows],
        [w.residence for _, w, _, _ in rows],
        [w.as_of for _, w, _, _ in rows],
        [m for _, _, m, _ in rows],
        [at for _, _, _, at in rows],
    )


async def insert_notifications(conn: asyncpg.Connection, ns: list[dict[str, Any]]) -> set[uuid.UUID]:
    """``insert_notification`` for many; the ids of those inserted (not already there)."""
    if not ns:
        return set()
    rows = await conn.fetch(
        """INSERT INTO notifications (id, target_division, source_division, subject, event_id, event_type,
                                      event_sequence, event_time, payload, deadline, next_attempt_at,
                                      withheld_fields, restricted)
           SELECT u.id, u.target, u.source, u.subject, u.event_id, u.event_type, u.seq, u.at, u.payload,
                  u.deadline, u.next_at, ARRAY(SELECT jsonb_array_elements_text(u.withheld::jsonb)),
                  u.restricted
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::bigint[],
                       $8::timestamptz[], $9::jsonb[], $10::timestamptz[], $11::timestamptz[], $12::text[],
                       $13::boolean[])
                AS u(id, target, source, subject, event_id, event_type, seq, at, payload, deadline, next_at, withheld,
                     restricted)
           ON CONFLICT (event_id, target_division) DO NOTHING RETURNING id""",
        *(
            [
                _json_text(n.get(k) or [])
                if k == "withheld_fields"
                else bool(n.get(k))
                if k == "restricted"
                else n.get(k)
                for n in ns
            ]
            for k in (
                "notification_id",
                "target_division",
                "source_division",
                "subject",
                "event_id",
                "event_type",
                "event_sequence",
                "event_time",
                "payload",
                "deadline",
                "next_attempt_at",
                "withheld_fields",
                "restricted",
            )
        ),
    )
    return {r["id"] for r in rows}


async def notification_targets(
    conn: asyncpg.Connection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str, bool]]:
    """Whom each of these notifications is addressed to, its event type and whether it was marked
    restricted when routed (absent ones left out)."""
    rows = await conn.fetch(
        "SELECT id, target_division, event_type, restricted FROM notifications WHERE id = ANY($1::uuid[])",
        ids,
    )
    return {r["id"]: (r["target_division"], r["event_type"], r["restricted"]) for r in rows}


async def close_notifications(
    conn: asyncpg.Connection, answers: list[tuple[uuid.UUID, str, str, list[dict[str, Any]], str | None]]
) -> set[uuid.UUID]:
    """``close_notification`` for many answers (notification id, from, outcome, conflicts, reason),
    at most one per notification; the ids closed now."""
    if not answers:
        return set()
    rows = await conn.fetch(
        """UPDATE notifications n SET state = u.outcome, feedback_at = now(), conflicts = u.conflicts::jsonb,
                                      reason = u.reason, next_attempt_at = NULL,
                                      payload = CASE WHEN u.outcome = 'applied' THEN NULL ELSE n.payload END
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                AS u(id, from_division, outcome, conflicts, reason)
           WHERE n.id = u.id AND n.target_division = u.from_division AND n.state IN ('pending', 'overdue')
           RETURNING n.id""",
        *([_json_text(a[i]) if i == 3 else a[i] for a in answers] for i in range(5)),
    )
    return {r["id"] for r in rows}


def _json_text(value: object) -> str:
    """A list for a jsonb array element, as JSON text (asyncpg would take a nested list for a
    second dimension of the array)."""
    return orjson.dumps(value).decode()
