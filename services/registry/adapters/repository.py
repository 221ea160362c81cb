"""All SQL of the registry's records. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from services.registry.domain.rules import Residence


async def get_person(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM persons WHERE jurisdiction = $1 AND id_number = $2", jurisdiction, id_number
    )


async def insert_person(
    conn: asyncpg.Connection,
    jurisdiction: str,
    p: dict[str, Any],
    subject: str,
    source_division: str,
    source_event_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
) -> bool:
    """Insert a person; False if the jurisdiction already holds one with that number."""
    inserted = await conn.fetchval(
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                                residence_division, source_division, source_event_id, event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,coalesce($11::uuid, $10::uuid)) ON CONFLICT DO NOTHING RETURNING true""",
        jurisdiction,
        p["id_number"],
        subject,
        p["name"],
        p["sex"],
        p["birth_date"],
        p["hukou_division"],
        p["residence_division"],
        source_division,
        source_event_id,
        event_id,
    )
    return bool(inserted)


async def set_residence(conn: asyncpg.Connection, jurisdiction: str, id_number: str, residence: str) -> None:
    await conn.execute(
        "UPDATE persons SET residence_division = $3, updated_at = now() WHERE jurisdiction = $1 AND id_number = $2",
        jurisdiction,
        id_number,
        residence,
    )


async def residence(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> Residence | None:
    row = await conn.fetchrow(
        """SELECT p.hukou_division, p.residence_division, m.migration_date AS last_move, m.kind, m.to_division
           FROM persons p LEFT JOIN LATERAL (
                SELECT migration_date, kind, to_division FROM migrations m
                 WHERE m.jurisdiction = p.jurisdiction AND m.id_number = p.id_number
                 ORDER BY migration_date DESC, created_at DESC LIMIT 1) m ON true
           WHERE p.jurisdiction = $1 AND p.id_number = $2 FOR UPDATE OF p""",
        jurisdiction,
        id_number,
    )
    if row is None:
        return None
    return Residence(
        row["hukou_division"], row["residence_division"], row["last_move"], row["kind"], row["to_division"]
    )


async def insert_migration(
    conn: asyncpg.Connection,
    jurisdiction: str,
    m: dict[str, Any],
    kind: str,
    source_division: str,
    source_event_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO migrations (id, jurisdiction, id_number, kind, from_division, to_division, migration_date,
                                   source_division, source_event_id, event_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,coalesce($10::uuid, $9::uuid)) ON CONFLICT DO NOTHING RETURNING true""",
        m["migration_id"],
        jurisdiction,
        m["id_number"],
        kind,
        m["from_division"],
        m["to_division"],
        m["migration_date"],
        source_division,
        source_event_id,
        event_id,
    )
    return bool(inserted)


async def births_of_mother(conn: asyncpg.Connection, jurisdiction: str, mother: str) -> list[asyncpg.Record]:
    return await conn.fetch(  # type: ignore[no-any-return]
        "SELECT * FROM births WHERE jurisdiction = $1 AND mother_id_number = $2 ORDER BY child_birth_date, birth_order",
        jurisdiction,
        mother,
    )


async def birth_by_certificate(
    conn: asyncpg.Connection, jurisdiction: str, number: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM births WHERE jurisdiction = $1 AND medical_certificate_number = $2",
        jurisdiction,
        number,
    )


async def insert_birth(
    conn: asyncpg.Connection,
    jurisdiction: str,
    b: dict[str, Any],
    source_division: str,
    source_event_id: uuid.UUID | None = None,
) -> bool:
    inserted = await conn.fetchval(
        """INSERT INTO births (id, jurisdiction, medical_certificate_number, child_name, child_sex, child_birth_date,
                               child_id_number, mother_id_number, father_id_number, birth_order, birth_division,
                               source_division, source_event_id, event_id, birth_place_kind, birth_institution)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$13,$14,$15) ON CONFLICT DO NOTHING RETURNING true""",
        b["birth_id"],
        jurisdiction,
        b["medical_certificate_number"],
        b["child_name"],
        b["child_sex"],
        b["child_birth_date"],
        b.get("child_id_number"),
        b["mother_id_number"],
        b.get("father_id_number"),
        b["birth_order"],
        b["birth_division"],
        source_division,
        source_event_id,
        b.get("birth_place_kind"),
        b.get("birth_institution"),
    )
    return bool(inserted)


async def marital_status(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> str:
    row = await conn.fetchrow(
        """SELECT dissolution_date, dissolution_reason FROM marriages
           WHERE jurisdiction = $1 AND (spouse_a_id_number = $2 OR spouse_b_id_number = $2)
           ORDER BY marriage_date DESC LIMIT 1""",
        jurisdiction,
        id_number,
    )
    if row is None:
        return "unmarried"
    if row["dissolution_date"] is None:
        return "married"
    return "widowed" if row["dissolution_reason"] == "death" else "divorced"


async def children_birth_dates(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> list[dt.date]:
    rows = await conn.fetch(
        """SELECT child_birth_date FROM births WHERE jurisdiction = $1 AND (mother_id_number = $2 OR father_id_number = $2)
           ORDER BY child_birth_date""",
        jurisdiction,
        id_number,
    )
    return [r["child_birth_date"] for r in rows]


async def next_status_index(conn: asyncpg.Connection, jurisdiction: str) -> int:
    return int(
        await conn.fetchval(
            """INSERT INTO status_counters (jurisdiction, next_index) VALUES ($1, 1)
               ON CONFLICT (jurisdiction) DO UPDATE SET next_index = status_counters.next_index + 1
               RETURNING next_index - 1""",
            jurisdiction,
        )
    )


async def insert_certificate(conn: asyncpg.Connection, jurisdiction: str, c: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO certificates (number, jurisdiction, holder_id_number, holder_name, marital_status,
                                     children_birth_dates, issued_on, valid_until, key_id, status_index, token)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)""",
        c["certificate_number"],
        jurisdiction,
        c["holder_id_number"],
        c["holder_name"],
        c["marital_status"],
        c["children_birth_dates"],
        c["issued_on"],
        c["valid_until"],
        c["key_id"],
        c["status_index"],
        c["token"],
    )


async def person_history(
    conn: asyncpg.Connection, jurisdiction: str, id_number: str
) -> dict[str, list[dict[str, Any]]]:
    migrations = await conn.fetch(
        """SELECT id, kind, from_division, to_division, migration_date, source_division FROM migrations
           WHERE jurisdiction = $1 AND id_number = $2 ORDER BY migration_date, created_at""",
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


async def delete_counterpart_records(conn: asyncpg.Connection, served: list[str]) -> dict[str, int]:
    """Rows the registry holds only because a counterpart told it, per table: how many deleted."""
    out: dict[str, int] = {}
    for table in ("births", "migrations", "persons"):  # children before the persons they name
        result = await conn.execute(
            f"DELETE FROM {table} WHERE jurisdiction = ANY($1::text[]) AND source_division <> jurisdiction",
            served,
        )
        out[table] = int(result.split()[-1])
    return out
