"""SQL of persons. Functions take the caller's connection (the unit of work)."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.registry.adapters import records
from services.registry.adapters.records import Made


async def get_person(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM persons WHERE jurisdiction = $1 AND id_number = $2", jurisdiction, id_number
    )


async def lock_person(conn: asyncpg.Connection, jurisdiction: str, id_number: str) -> None:
    """Lock a person's row, so concurrent records about her queue up."""
    await conn.execute(
        "SELECT 1 FROM persons WHERE jurisdiction = $1 AND id_number = $2 FOR UPDATE", jurisdiction, id_number
    )


async def insert_person(
    conn: asyncpg.Connection,
    jurisdiction: str,
    p: dict[str, Any],
    subject: str,
    made: Made,
) -> bool:
    """Insert a person; False if the jurisdiction already holds one with that number."""
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


async def set_residence(conn: asyncpg.Connection, jurisdiction: str, id_number: str, residence: str) -> None:
    await conn.execute(
        "UPDATE persons SET residence_division = $3, updated_at = now() WHERE jurisdiction = $1 AND id_number = $2",
        jurisdiction,
        id_number,
        residence,
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
