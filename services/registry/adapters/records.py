"""SQL of any record by its type and key (what corrections and repairs change)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

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


def record_key(record_type: str, record_id: str) -> object | None:
    """A record's key from its text (a uuid, an id number, a certificate number), or None when the
    text names no record of that type (or the type is none of ours)."""
    key = _key(record_type, record_id) if record_type in RECORD_TABLES else None
    return None if key is None else key[2]


# Her row locked before her move (one statement; the move then read and locked by another, which
# sees the move as it is once she is ours): a correction or a repair of a move reads her moves
# under her lock, and recording a move takes her row before her moves. The move locked first, a
# request correcting it waited for her row while a batch that held her row (recording a move of
# hers, or correcting another) went on to correct the same move: a deadlock, one of them
# answered 503.
_LOCK_MOVER = """SELECT 1 FROM migrations m
                   JOIN persons p ON p.jurisdiction = m.jurisdiction AND p.id_number = m.id_number
                  WHERE m.jurisdiction = $1 AND m.id = $2 FOR UPDATE OF p"""


async def get_record(
    conn: asyncpg.Connection, jurisdiction: str, record_type: str, record_id: str
) -> asyncpg.Record | None:
    """A record named by its type and key as text (locked: a correction or repair changes it; a
    move after its person, ``_LOCK_MOVER``)."""
    key = _key(record_type, record_id)
    if key is None:
        return None
    if record_type == "migration":
        await conn.execute(_LOCK_MOVER, jurisdiction, key[2])
    return await get_by_key(conn, jurisdiction, record_type, key[2], lock=True)


async def get_by_key(
    conn: asyncpg.Connection, jurisdiction: str, record_type: str, key: object, *, lock: bool = False
) -> asyncpg.Record | None:
    """A record of this jurisdiction by its key (``FOR UPDATE`` with ``lock``)."""
    table, column, _ = RECORD_TABLES[record_type]
    return await conn.fetchrow(
        f"SELECT * FROM {table} WHERE jurisdiction = $1 AND {column} = $2" + (" FOR UPDATE" if lock else ""),
        jurisdiction,
        key,
    )


class Made(NamedTuple):
    """Where a row came from: the division that recorded it, the counterpart's event it was copied
    from (``source_event_id``), and our own event that made it (``event_id``: a record of ours,
    or ours sent back by a counterpart in a repair)."""

    source_division: str
    source_event_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None


def made_columns(made: Made) -> tuple[str, uuid.UUID | None, uuid.UUID | None]:
    """A row's source_division, source_event_id and event_id: the event that made it is ours or
    else the counterpart's."""
    return (
        made.source_division,
        made.source_event_id,
        made.event_id if made.event_id is not None else made.source_event_id,
    )


def as_columns(rows: Iterable[Sequence[object]]) -> list[list[object]]:
    """Rows as one list per column, the arrays a multi-row statement unnests (none for no rows)."""
    return [list(column) for column in zip(*rows, strict=True)]


async def insert_once(conn: asyncpg.Connection, table: str, row: dict[str, object], made: Made) -> bool:
    """Insert ``row`` (column -> value; the columns are ours, never caller text) with where it came
    from; the event that made it is ours or else the counterpart's. False if a row with its key
    is already there."""
    source_division, source_event_id, event_id = made_columns(made)
    row = {
        **row,
        "source_division": source_division,
        "source_event_id": source_event_id,
        "event_id": event_id,
    }
    placeholders = ", ".join(f"${n}" for n in range(1, len(row) + 1))
    return bool(
        await conn.fetchval(
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({placeholders}) ON CONFLICT DO NOTHING RETURNING true",
            *row.values(),
        )
    )


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


# Tables holding what counterparts told a registry, each row marked with its sender
# (source_division), children before the records they name; a marriage's ``marriage_spouses``
# rows go with it (ON DELETE CASCADE). Corrections are deleted first, apart: see below.
COUNTERPART_TABLES = (
    "counterpart_certificates",
    "pregnancies",
    "marriages",
    "births",
    "migrations",
    "persons",
)


# A counterpart's marriage or pregnancy whose end we recorded (``ended_by``, migration 0024) is
# partly ours: no notification brings that end back, so the replay keeps the record.
ENDED_HERE_KEPT = frozenset({"marriages", "pregnancies"})


async def delete_counterpart_records(conn: asyncpg.Connection, served: list[str]) -> dict[str, int]:
    """Rows the registry holds only because a counterpart told it, per table: how many deleted.
    The registry's own records (source division = jurisdiction) stay, and so does a counterpart's
    marriage or pregnancy whose end we recorded (a divorce recorded at her residence, a closure
    when the child was born here): forgotten, the replay would bring it back unended.

    A counterpart's correction goes with them: kept, the replay would find it applied already
    (``corrections.applied_before``) and leave the record it changed as first told. One that
    brought back a record of our own (a repair, ``repairs._restore``) stays with that record."""
    out = {"corrections": await _delete_counterpart_corrections(conn, served)}
    for table in COUNTERPART_TABLES:  # ours, never caller text
        kept = " AND ended_by IS DISTINCT FROM jurisdiction" if table in ENDED_HERE_KEPT else ""
        result = await conn.execute(
            f"DELETE FROM {table} WHERE jurisdiction = ANY($1::text[]) AND source_division <> jurisdiction{kept}",
            served,
        )
        out[table] = int(result.split()[-1])
    return out


def _names_own_record(record_type: str) -> str:
    """SQL: the correction ``c`` is about a record of our own of ``record_type``."""
    table, column, _ = RECORD_TABLES[record_type]
    # the certificates register holds only our own; another issuer's is a counterpart_certificates copy
    own = "" if record_type == "certificate" else " AND r.source_division = r.jurisdiction"
    return (
        f"(c.record_type = '{record_type}' AND EXISTS (SELECT 1 FROM {table} r"
        f" WHERE r.jurisdiction = c.jurisdiction AND r.{column}::text = c.record_id{own}))"
    )


async def _delete_counterpart_corrections(conn: asyncpg.Connection, served: list[str]) -> int:
    about_ours = " OR ".join(_names_own_record(t) for t in RECORD_TABLES)
    result = await conn.execute(
        f"""DELETE FROM corrections c
             WHERE c.jurisdiction = ANY($1::text[]) AND c.source_division <> c.jurisdiction
               AND NOT ({about_ours})""",
        served,
    )
    return int(result.split()[-1])
