"""A registrar records the arrival of a person at the moment a notification about her is applied.

The notification's transaction writes her row first and then takes her subject's sequence number
(for its feedback). The arrival used to take the sequence number first and then wait for her row:
each waited for the other, PostgreSQL broke the deadlock by failing one, and the registrar got a
500 (seen in CI). Now the arrival writes her row first, waits behind the notification, and is
judged against what it applied.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg

from services.registry.domain.migrations import MigrationRecorded, RecordMigration
from services.registry.service_layer.context import Context, source
from services.registry.service_layer.migrations import record_migration
from services.registry.settings import RegistrySettings
from shared.db import init_connection, migrate
from shared.outbox import next_sequence
from tests.helpers import person_id

HUKOU, HERE = "110101", "440703"


async def _test(dsn: str) -> None:
    await migrate(dsn, "registry", Path("services/registry/migrations"))
    ctx = Context(RegistrySettings(database_url=dsn, jurisdictions=HERE))
    woman = person_id("F")
    born = dt.date(int(woman[6:10]), int(woman[10:12]), int(woman[12:14]))
    notification, registrar = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    await init_connection(registrar)
    try:
        await notification.execute("SET deadlock_timeout = '100ms'")
        applying = notification.transaction()
        await applying.start()
        await notification.execute(  # what the counterpart applier writes for her departure
            """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date,
                                    hukou_division, residence_division, source_division)
               VALUES ($1, $2, $3, '钱丽', 'F', $4, $5, $1, $5)""",
            HERE,
            woman,
            ctx.subject(woman),
            born,
            HUKOU,
        )
        await notification.execute(
            """INSERT INTO migrations (id, jurisdiction, id_number, kind, from_division, to_division,
                                       migration_date, source_division)
               VALUES (gen_random_uuid(), $1, $2, 'departed', $3, $1, '2025-02-01', $3)""",
            HERE,
            woman,
            HUKOU,
        )
        move = RecordMigration.model_validate(
            {
                "kind": "arrived",
                "id_number": woman,
                "from_division": HUKOU,
                "to_division": HERE,
                "migration_date": dt.date(2025, 2, 1),
                "name": "钱丽",
                "hukou_division": HUKOU,
            }
        )

        async def arrive() -> MigrationRecorded:
            async with registrar.transaction():
                return await record_migration(registrar, ctx, HERE, move)

        arriving = asyncio.create_task(arrive())
        await asyncio.sleep(0.3)  # the arrival is under way, waiting for her row
        # The notification's feedback takes her subject's sequence number, then commits.
        await asyncio.wait_for(next_sequence(notification, ctx.subject(woman), source(HERE)), 5)
        await applying.commit()
        recorded = await asyncio.wait_for(arriving, 10)
        assert recorded.kind == "arrived" and recorded.jurisdiction == HERE
        rows = await registrar.fetch(
            "SELECT kind FROM migrations WHERE jurisdiction = $1 AND id_number = $2", HERE, woman
        )
        assert sorted(r["kind"] for r in rows) == ["arrived", "departed"]
        assert (
            await registrar.fetchval(
                "SELECT residence_division FROM persons WHERE jurisdiction = $1 AND id_number = $2",
                HERE,
                woman,
            )
            == HERE
        )
    finally:
        await notification.close()
        await registrar.close()


def test_an_arrival_recorded_while_a_notification_about_her_is_applied_waits_and_succeeds(
    fresh_db: str,
) -> None:
    asyncio.run(_test(fresh_db))
