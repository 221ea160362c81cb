"""SQL of moves. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from services.registry.adapters import persons, records
from services.registry.adapters.records import Made
from services.registry.domain.migrations import Residence

# A person's moves are ordered by date, then by ``seq``, a number drawn as each move is inserted
# here (0023): moves of one day follow the order they were recorded or applied in (a batch's as
# sent, a unit of work's notifications as produced), under her row's lock. Here, in
# ``persons.person_history`` and wherever her last move is chosen. The time recorded was no order:
# now() is the transaction's start, the same for a batch's moves (which then came back in whatever
# order PostgreSQL held the rows), and earlier for a transaction that waited for her lock than for
# the one it waited for.


async def residence(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> Residence | None:
    """``residences`` of one person, for a single request: plain statements, since the unnest
    form run one row at a time cost PostgreSQL about twice the CPU per recorded move (bench of
    one move per request, 2026-12-02: 3.6 against 1.6 ms per event)."""
    await persons.lock_person(conn, jurisdiction, id_number)
    row = await conn.fetchrow(
        """SELECT p.hukou_division, p.residence_division, m.migration_date AS last_move, m.kind, m.to_division
           FROM persons p LEFT JOIN LATERAL (
                SELECT migration_date, kind, to_division FROM migrations m
                 WHERE m.jurisdiction = p.jurisdiction AND m.id_number = p.id_number
                 ORDER BY migration_date DESC, seq DESC LIMIT 1) m ON true
           WHERE p.jurisdiction = $1 AND p.id_number = $2""",
        jurisdiction,
        id_number,
    )
    if row is None:
        return None
    return Residence(
        row["hukou_division"], row["residence_division"], row["last_move"], row["kind"], row["to_division"]
    )


async def dates_around(
    conn: asyncpg.Connection, jurisdiction: str, migration_id: uuid.UUID
) -> tuple[dt.date | None, dt.date | None]:
    """The dates of the moves around a held move in its person's history, ordered as
    ``residence`` orders them (date, then ``seq``): the latest before it and the earliest after
    it, where it is held now."""
    row = await conn.fetchrow(
        """SELECT max(o.migration_date) FILTER (
                      WHERE (o.migration_date, o.seq) < (m.migration_date, m.seq)) AS before,
                  min(o.migration_date) FILTER (
                      WHERE (o.migration_date, o.seq) > (m.migration_date, m.seq)) AS after
             FROM migrations m
             JOIN migrations o ON o.jurisdiction = m.jurisdiction AND o.id_number = m.id_number AND o.id <> m.id
            WHERE m.jurisdiction = $1 AND m.id = $2""",
        jurisdiction,
        migration_id,
    )
    return (row["before"], row["after"]) if row is not None else (None, None)


async def residences(
    conn: asyncpg.Connection, people: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Residence]:
    """Where each (jurisdiction, number) on record lives and the last move known of her, her row
    locked first (``persons.lock_people``); the rows are locked in key order (each locked as its key's
    probe finds it, the keys sorted), so two batches about the same people cannot deadlock. People
    not on record are absent (their keys locked instead, ``persons._LOCK_PEOPLE``: a run's first
    records are inserted in its order). A probe per key: see shared.inbox.BY_KEY."""
    # Her row is locked by a statement of its own before her moves are read. Read in the locking
    # statement, the moves would be those of its snapshot: when it waits for a writer of her moves,
    # PostgreSQL re-reads only the locked row once that writer commits, not the move it wrote, and
    # the next move would be judged against a last move that is no longer the last.
    keys = await persons.lock_people(conn, people)
    columns = [j for j, _ in keys], [n for _, n in keys]
    rows = await conn.fetch(
        """SELECT p.jurisdiction, p.id_number, p.hukou_division, p.residence_division,
                  m.migration_date AS last_move, m.kind, m.to_division
           FROM unnest($1::text[], $2::text[]) AS u(j, n)
           CROSS JOIN LATERAL (SELECT jurisdiction, id_number, hukou_division, residence_division FROM persons
                                WHERE jurisdiction = u.j AND id_number = u.n LIMIT 1) p
           LEFT JOIN LATERAL (
                SELECT migration_date, kind, to_division FROM migrations m
                 WHERE m.jurisdiction = p.jurisdiction AND m.id_number = p.id_number
                 ORDER BY migration_date DESC, seq DESC LIMIT 1) m ON true
           ORDER BY p.jurisdiction, p.id_number""",
        *columns,
    )
    return {
        (r["jurisdiction"], r["id_number"]): Residence(
            r["hukou_division"], r["residence_division"], r["last_move"], r["kind"], r["to_division"]
        )
        for r in rows
    }


async def insert_migration(
    conn: asyncpg.Connection,
    jurisdiction: str,
    m: dict[str, Any],
    kind: str,
    made: Made,
) -> bool:
    """``insert_migrations`` of one move (a plain statement, as ``residence``)."""
    return await records.insert_once(
        conn,
        "migrations",
        {
            "id": m["migration_id"],
            "jurisdiction": jurisdiction,
            "id_number": m["id_number"],
            "kind": kind,
            "from_division": m["from_division"],
            "to_division": m["to_division"],
            "migration_date": m["migration_date"],
        },
        made,
    )


# Her moves of a restored move's day made after it (by the events that made them: UUIDv7 ids,
# made in order), in their order: each drawn a new ``seq`` in turn, so they follow it again.
_MADE_AFTER = """SELECT o.id FROM migrations m
                   JOIN migrations o ON o.jurisdiction = m.jurisdiction AND o.id_number = m.id_number
                                    AND o.migration_date = m.migration_date AND o.id <> m.id
                  WHERE m.jurisdiction = $1 AND m.id = $2
                    AND coalesce(o.event_id, o.source_event_id) > coalesce(m.event_id, m.source_event_id)
                  ORDER BY o.seq"""


async def place_restored(conn: asyncpg.Connection, jurisdiction: str, migration_id: object) -> None:
    """A move just restored whole (a reconciliation repair), under her row's lock: its ``seq``,
    drawn at insert, put it after all her moves of its day, and made it her last where a move of
    that day made after it was (her residence then followed it back). The moves of its day made
    after it are given new numbers in their order, after it; where it was is lost with the row,
    and the events that made them are the order they were made in."""
    for row in await conn.fetch(_MADE_AFTER, jurisdiction, migration_id):
        await conn.execute(
            """UPDATE migrations SET seq = nextval(pg_get_serial_sequence('migrations', 'seq'))
               WHERE jurisdiction = $1 AND id = $2""",
            jurisdiction,
            row["id"],
        )


async def insert_migrations(
    conn: asyncpg.Connection, moves: Sequence[tuple[str, Mapping[str, Any], str, Made]]
) -> set[uuid.UUID]:
    """``insert_migration`` for many (jurisdiction, move, kind, made) in one statement, in list
    order: a move already held, or named twice, is inserted once. Returns the ids inserted."""
    if not moves:
        return set()
    columns = records.as_columns(
        (
            m["migration_id"],
            jurisdiction,
            m["id_number"],
            kind,
            m["from_division"],
            m["to_division"],
            m["migration_date"],
            *records.made_columns(made),
        )
        for jurisdiction, m, kind, made in moves
    )
    rows = await conn.fetch(
        """INSERT INTO migrations (id, jurisdiction, id_number, kind, from_division, to_division,
                                   migration_date, source_division, source_event_id, event_id)
           SELECT id, j, n, k, f, t, d, sd, se, e
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::date[], $8::text[], $9::uuid[], $10::uuid[]) WITH ORDINALITY
                  AS u(id, j, n, k, f, t, d, sd, se, e, i)
            ORDER BY i
           ON CONFLICT DO NOTHING
           RETURNING id""",
        *columns,
    )
    return {r["id"] for r in rows}


async def held_moves(
    conn: asyncpg.Connection, keys: Iterable[tuple[str, uuid.UUID]]
) -> dict[tuple[str, uuid.UUID], asyncpg.Record]:
    """The moves held under (jurisdiction, id) keys, by key; keys not held are absent."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT m.* FROM unnest($1::text[], $2::uuid[]) AS u(j, i)
           JOIN migrations m ON m.jurisdiction = u.j AND m.id = u.i""",
        [j for j, _ in wanted],
        [i for _, i in wanted],
    )
    return {(r["jurisdiction"], r["id"]): r for r in rows}
