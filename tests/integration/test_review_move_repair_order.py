"""A move restored by a reconciliation repair takes its place among her moves of its day as the
events that made them were made, not after them all (``seq``, registry migration 0023).

Her registry of origin was told of two departures of one day: from THERE to ELSEWHERE, then from
ELSEWHERE on to FARTHER, where she lives. The first is lost here and a repair brings it back whole.
Drawn at its insert, its ``seq`` made it her last move of the day, and the residence that follows
her last move (``migrations.residence_follows``) took her back to ELSEWHERE.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson

from services.registry.service_layer.counterpart import apply_notification
from services.registry.settings import RegistrySettings
from shared.db import create_pool, migrate
from tests.helpers import notification, person_id

HERE, THERE, ELSEWHERE, FARTHER = "320412", "440703", "110101", "310101"
DAY = "2025-06-01"


def _departure(her: str, frm: str, to: str) -> dict[str, Any]:
    return {"migration_id": str(uuid.uuid4()), "id_number": her, "from_division": frm, "to_division": to,
            "migration_date": DAY, "name": "修复", "hukou_division": HERE}  # fmt: skip


async def _run(dsn: str) -> tuple[list[str], str]:
    await migrate(dsn, "registry", Path("services/registry/migrations"))
    pool = await create_pool(dsn, min_size=1, max_size=1)
    settings = RegistrySettings(database_url=dsn, jurisdictions=HERE)
    her = person_id("F")
    born = f"{her[6:10]}-{her[10:12]}-{her[12:14]}"
    person = {"id_number": her, "name": "修复", "sex": "F", "birth_date": born,
              "hukou_division": HERE, "residence_division": THERE}  # fmt: skip
    first, second = _departure(her, THERE, ELSEWHERE), _departure(her, ELSEWHERE, FARTHER)
    told = [
        notification(HERE, "person.registered.v1", person, THERE),
        notification(HERE, "migration.departed.v1", first, THERE),
        notification(HERE, "migration.departed.v1", second, ELSEWHERE),
    ]
    whole = {k: v for k, v in first.items() if k not in ("name", "hukou_division")} | {"kind": "departed"}
    repair = {"correction_id": str(uuid.uuid4()), "corrected_event_id": str(told[1].data.event_id),
              "record_type": "migration", "record_id": first["migration_id"], "changes": whole,
              "reason": "repair of reconciliation case 1"}  # fmt: skip
    outcomes = []
    try:
        async with pool.acquire() as conn:

            async def apply(event: Any) -> None:
                async with conn.transaction():
                    await apply_notification(conn, settings, event)
                answer = await conn.fetchval(
                    "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id DESC LIMIT 1"
                )
                outcomes.append(orjson.loads(answer)["data"]["outcome"])

            for event in told:
                await apply(event)
            lives = await conn.fetchval("SELECT residence_division FROM persons WHERE id_number = $1", her)
            assert lives == FARTHER
            # the first departure lost here
            await conn.execute("DELETE FROM migrations WHERE id = $1::uuid", first["migration_id"])
            await apply(notification(HERE, "record.corrected.v1", repair, THERE))
            lives = await conn.fetchval("SELECT residence_division FROM persons WHERE id_number = $1", her)
    finally:
        await pool.close()
    return outcomes, lives


def test_a_move_restored_among_her_moves_of_its_day_leaves_her_where_the_last_took_her(fresh_db: str) -> None:
    outcomes, lives = asyncio.run(_run(fresh_db))
    assert outcomes == ["applied"] * 4
    assert lives == FARTHER
