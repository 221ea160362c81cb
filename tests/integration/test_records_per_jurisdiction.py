"""One registry instance keeping the records of two jurisdictions (``JURISDICTIONS=A,B``): a
counterpart's marriage, birth and move, notified to each of them under the same record id, are
recorded by each, and each answers for its own copy.

Until a record's key was (jurisdiction, id), the second jurisdiction's copy was not inserted (the
id was taken by the first's) and was answered ``applied`` all the same.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson

from services.registry.service_layer.counterpart import apply_notification
from services.registry.settings import RegistrySettings
from shared.db import create_pool, migrate
from tests.helpers import medical_certificate, notification, person_id

A, B, C = "320412", "440703", "110101"


def test_a_record_notified_to_two_jurisdictions_of_one_instance_is_kept_by_each(fresh_db: str) -> None:
    async def run() -> None:
        await migrate(fresh_db, "registry", Path("services/registry/migrations"))
        pool = await create_pool(fresh_db, min_size=1, max_size=1)
        settings = RegistrySettings(database_url=fresh_db, jurisdictions=f"{A},{B}")
        mother, husband = person_id("F"), person_id("M")
        birth = {
            "birth_id": str(uuid.uuid4()),
            "medical_certificate_number": medical_certificate(),
            "child_name": "王小静",
            "child_sex": "F",
            "child_birth_date": "2025-01-01",
            "mother_id_number": mother,
            "birth_order": 1,
            "birth_place": {"division": C, "kind": "hospital"},
        }
        marriage = {
            "marriage_id": str(uuid.uuid4()),
            "spouse_a_id_number": mother,
            "spouse_a_name": "王静",
            "spouse_b_id_number": husband,
            "spouse_b_name": "李强",
            "marriage_date": "2024-01-01",
            "registered_in": C,
        }
        move = {
            "migration_id": str(uuid.uuid4()),
            "id_number": mother,
            "name": "王静",
            "hukou_division": A,
            "from_division": C,
            "to_division": B,
            "migration_date": "2025-02-01",
        }
        dissolved = {
            "marriage_id": marriage["marriage_id"],
            "spouse_a_id_number": mother,
            "spouse_b_id_number": husband,
            "dissolution_date": "2025-03-01",
            "reason": "divorce",
        }
        kinds = (
            ("birth.registered.v2", birth),
            ("marriage.registered.v1", marriage),
            ("migration.departed.v1", move),
            ("marriage.dissolved.v1", dissolved),
        )
        try:
            async with pool.acquire() as conn:
                for target in (A, B):
                    for event_type, data in kinds:
                        async with conn.transaction():
                            await apply_notification(
                                conn, settings, notification(target, event_type, data, source=C)
                            )
                held = {
                    table: sorted(
                        r["jurisdiction"] for r in await conn.fetch(f"SELECT jurisdiction FROM {table}")
                    )
                    for table in ("births", "marriages", "migrations")
                }
                dissolutions = await conn.fetch(
                    "SELECT jurisdiction FROM marriages WHERE dissolution_date IS NOT NULL"
                )
                active = await conn.fetchval("SELECT count(*) FROM marriage_spouses WHERE active")
                answers = [
                    orjson.loads(r["value"])["data"]["outcome"]
                    for r in await conn.fetch(
                        "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1'"
                    )
                ]
        finally:
            await pool.close()
        assert held == {"births": [A, B], "marriages": [A, B], "migrations": [A, B]}, held
        assert len(dissolutions) == 2 and active == 0  # each copy dissolved, its spouses freed
        assert answers == ["applied"] * 8, answers

    asyncio.run(run())
