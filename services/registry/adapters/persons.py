"""SQL of persons. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from services.registry.adapters import records
from services.registry.adapters.records import Made


async def get_person(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM persons WHERE jurisdiction = $1 AND id_number = $2", jurisdiction, id_number
    )


async def get_people(
    conn: asyncpg.Connection, jurisdiction: str, id_numbers: Iterable[str]
) -> dict[str, Mapping[str, Any]]:
    """Name and place of household registration of each of these numbers on record here."""
    rows = await conn.fetch(  # a probe per number: see shared.inbox.BY_KEY
        """SELECT p.id_number, p.name, p.hukou_division
             FROM unnest($2::text[]) AS u(n)
             CROSS JOIN LATERAL (SELECT id_number, name, hukou_division FROM persons
                                  WHERE jurisdiction = $1 AND id_number = u.n LIMIT 1) p""",
        jurisdiction,
        sorted(set(id_numbers)),
    )
    return {r["id_number"]: r for r in rows}


async def lock_person(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> None:
    """Lock a person's row, so concurrent records about her queue up."""
    await conn.execute(
        "SELECT 1 FROM persons WHERE jurisdiction = $1 AND id_number = $2 FOR UPDATE", jurisdiction, id_number
    )


# People's rows locked in one statement and one order, (jurisdiction, id_number) as bytes (what
# Python's sort of the keys gives, "C"): each row locked as its key's probe finds it, the keys in
# that order, so two transactions locking some of the same people this way queue up instead of
# deadlocking. Her row is locked before her records (a move, a marriage, ...) are read or locked.
# A person not on record yet has no row to lock: her key's transaction-scoped advisory lock
# (``_NEW_PERSON``, a 64-bit hash of it) is taken in its place, at her turn in the same order, so
# two transactions about to insert X and Y in opposite orders queue up here too, rather than each
# inserting one and waiting for the other's uncommitted entry in the unique index (a deadlock).
# Whoever inserts a person in a transaction that writes about anyone else takes it this way first
# (a batch's or a unit of work's lock step, a run of moves' ``migrations.residences``); a single
# request inserting one person needs none: it waits for no one once she is inserted.
_NEW_PERSON = "pg_advisory_xact_lock(hashtextextended(u.j || '/' || u.n, 0))"
_LOCK_PEOPLE = f"""SELECT 1 FROM ({{keys}}) AS u(j, n)
                  LEFT JOIN LATERAL (SELECT 1 AS held FROM persons
                                      WHERE jurisdiction = u.j AND id_number = u.n LIMIT 1 FOR UPDATE) p ON true
                  CROSS JOIN LATERAL (SELECT {_NEW_PERSON} WHERE p.held IS NULL) a"""
# The keys given, sorted by the caller.
_GIVEN = "SELECT * FROM unnest($1::text[], $2::text[])"
# The people of records given as (type, jurisdiction, text key, uuid key): a person herself, whose
# move, the spouses of a marriage, the mother of a birth or pregnancy, a certificate's holder.
_OF_RECORDS = """WITH r(t, j, k, u) AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[]))
    SELECT j, n FROM (
        SELECT j, k AS n FROM r WHERE t = 'person'
        UNION SELECT x.jurisdiction, x.id_number FROM r JOIN migrations x
                  ON r.t = 'migration' AND x.jurisdiction = r.j AND x.id = r.u
        UNION SELECT x.jurisdiction, x.id_number FROM r JOIN marriage_spouses x
                  ON r.t = 'marriage' AND x.jurisdiction = r.j AND x.marriage_id = r.u
        UNION SELECT x.jurisdiction, x.mother_id_number FROM r JOIN births x
                  ON r.t = 'birth' AND x.jurisdiction = r.j AND x.id = r.u
        UNION SELECT x.jurisdiction, x.mother_id_number FROM r JOIN pregnancies x
                  ON r.t = 'pregnancy' AND x.jurisdiction = r.j AND x.id = r.u
        UNION SELECT x.jurisdiction, x.holder_id_number FROM r JOIN certificates x
                  ON r.t = 'certificate' AND x.jurisdiction = r.j AND x.number = r.k
    ) k ORDER BY j COLLATE "C", n COLLATE "C"
"""
_LOCK_GIVEN, _LOCK_OF_RECORDS = _LOCK_PEOPLE.format(keys=_GIVEN), _LOCK_PEOPLE.format(keys=_OF_RECORDS)


async def lock_people(conn: asyncpg.Connection, people: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Lock the rows of these (jurisdiction, number) on record, and the keys of those not on
    record, in key order (``_LOCK_PEOPLE``): the keys, sorted."""
    keys = sorted(set(people))
    columns = [j for j, _ in keys], [n for _, n in keys]
    await conn.execute(_LOCK_GIVEN, *columns)
    return keys


async def lock_people_of(conn: asyncpg.Connection, touched: Iterable[tuple[str, str, object]]) -> None:
    """``lock_people`` of the people whose records these are, as (record type, jurisdiction, key):
    found and locked in one statement. Records not on record lock nobody; a person not on record
    (one to register), her key."""
    types: list[str] = []
    places: list[str] = []
    texts: list[str | None] = []
    ids: list[uuid.UUID | None] = []
    for record_type, jurisdiction, key in set(touched):
        types.append(record_type)
        places.append(jurisdiction)
        texts.append(key if isinstance(key, str) else None)
        ids.append(key if isinstance(key, uuid.UUID) else None)
    if types:
        await conn.execute(_LOCK_OF_RECORDS, types, places, texts, ids)


async def insert_person(
    conn: asyncpg.Connection,
    jurisdiction: str,
    p: dict[str, Any],
    subject: str,
    made: Made,
) -> bool:
    """Insert a person; False if the jurisdiction already holds one with that number (one row: a
    plain statement, see ``migrations.residence``; ``insert_persons`` for many)."""
    return await records.insert_once(
        conn,
        "persons",
        {
            "jurisdiction": jurisdiction,
            "id_number": p["id_number"],
            "subject": subject,
            "name": p["name"],
            "sex": p["sex"],
            "birth_date": p["birth_date"],
            "hukou_division": p["hukou_division"],
            "residence_division": p["residence_division"],
        },
        made,
    )


async def insert_persons(
    conn: asyncpg.Connection, people: Sequence[tuple[str, Mapping[str, Any], str, Made]]
) -> set[tuple[str, str]]:
    """``insert_person`` for many (jurisdiction, person, subject, made) in one statement, in list
    order: a person already held, or named twice, is inserted once. Returns the (jurisdiction,
    number) pairs inserted."""
    if not people:
        return set()
    columns = records.as_columns(
        (
            jurisdiction,
            p["id_number"],
            subject,
            p["name"],
            p["sex"],
            p["birth_date"],
            p["hukou_division"],
            p["residence_division"],
            *records.made_columns(made),
        )
        for jurisdiction, p, subject, made in people
    )
    rows = await conn.fetch(
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                                residence_division, source_division, source_event_id, event_id)
           SELECT j, n, s, nm, sx, b, h, r, sd, se, e
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[], $7::text[],
                         $8::text[], $9::text[], $10::uuid[], $11::uuid[]) WITH ORDINALITY
                  AS u(j, n, s, nm, sx, b, h, r, sd, se, e, i)
            ORDER BY i
           ON CONFLICT DO NOTHING
           RETURNING jurisdiction, id_number""",
        *columns,
    )
    return {(r["jurisdiction"], r["id_number"]) for r in rows}


async def set_residence(conn: asyncpg.Connection, jurisdiction: str, id_number: str, residence: str) -> None:
    """Where one person lives now (``set_residences`` for many)."""
    await conn.execute(
        "UPDATE persons SET residence_division = $3, updated_at = now() WHERE jurisdiction = $1 AND id_number = $2",
        jurisdiction,
        id_number,
        residence,
    )


async def set_residences(conn: asyncpg.Connection, residences: Mapping[tuple[str, str], str]) -> None:
    """Where each (jurisdiction, number) lives now, in one statement."""
    if not residences:
        return
    keys = sorted(residences)
    await conn.execute(
        """UPDATE persons p SET residence_division = u.r, updated_at = now()
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u(j, n, r)
            WHERE p.jurisdiction = u.j AND p.id_number = u.n""",
        [j for j, _ in keys],
        [n for _, n in keys],
        [residences[k] for k in keys],
    )


async def person_history(
    conn: asyncpg.Connection, jurisdiction: str, id_number: str
) -> dict[str, list[dict[str, Any]]]:
    migrations = await conn.fetch(
        """SELECT id, kind, from_division, to_division, migration_date, source_division FROM migrations
           WHERE jurisdiction = $1 AND id_number = $2 ORDER BY migration_date, seq""",
        jurisdiction,
        id_number,
    )
    births = await conn.fetch(
        """SELECT id, medical_certificate_number, child_name, child_sex, child_birth_date, birth_order,
                  birth_division, source_division FROM births
           WHERE jurisdiction = $1 AND (mother_id_number = $2 OR father_id_number = $2) ORDER BY child_birth_date""",
        jurisdiction,
        id_number,
    )
    return {"migrations": [dict(r) for r in migrations], "births": [dict(r) for r in births]}
