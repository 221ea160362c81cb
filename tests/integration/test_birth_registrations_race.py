"""Two births of one mother registered at the same moment.

``register_birth`` reads the mother's births (unlocked), computes the next birth order, then
inserts with ``INSERT ... ON CONFLICT DO NOTHING`` (``records.insert_once``) and ignores whether
a row was inserted. The second of two concurrent registrations waits on the first one's unique
key (jurisdiction, mother, birth_order), inserts nothing, and still announces
``birth.registered.v2`` and answers a birth that is not in the records: a lost birth and an
event about a record that does not exist.

That was so until the mother's row was locked first (as marriages and pregnancies do): the second
registration now waits for the first and records order 2, or is refused (409); whatever it
answers as recorded is in the births table.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg

from services.registry.domain.births import RegisterBirth
from services.registry.domain.persons import RegisterPerson
from services.registry.service_layer.births import register_birth
from services.registry.service_layer.context import Context
from services.registry.service_layer.persons import register_person
from services.registry.settings import RegistrySettings
from shared.db import init_connection, migrate
from shared.errors import DomainError
from tests.helpers import medical_certificate, person_id

HERE = "440703"


async def _test(dsn: str) -> None:
    await migrate(dsn, "registry", Path("services/registry/migrations"))
    ctx = Context(RegistrySettings(database_url=dsn, jurisdictions=HERE))
    mother = person_id("F")
    born = dt.date(int(mother[6:10]), int(mother[10:12]), int(mother[12:14]))
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    for c in (first, second):
        await init_connection(c)
    try:
        async with first.transaction():
            person = RegisterPerson.model_validate(
                {"id_number": mother, "name": "王芳", "sex": "F", "birth_date": born, "hukou_division": HERE}
            )
            await register_person(first, ctx, HERE, person)

        def birth() -> RegisterBirth:
            return RegisterBirth.model_validate(
                {
                    "medical_certificate_number": medical_certificate(),
                    "child_name": "小明",
                    "child_sex": "M",
                    "child_birth_date": "2024-03-01",
                    "mother_id_number": mother,
                }
            )

        tx = first.transaction()
        await tx.start()
        one = await register_birth(first, ctx, HERE, birth())  # recorded, not yet committed

        async def other() -> object:
            async with second.transaction():
                try:
                    return await register_birth(second, ctx, HERE, birth())
                except DomainError as e:
                    return e

        racing = asyncio.create_task(other())
        await asyncio.sleep(0.5)  # the second registration is under way, waiting on the first
        await tx.commit()
        two = await asyncio.wait_for(racing, 10)

        rows = await first.fetch(
            "SELECT id, birth_order FROM births WHERE jurisdiction = $1 AND mother_id_number = $2",
            HERE,
            mother,
        )
        ids = {r["id"] for r in rows}
        assert one.birth_id in ids
        if isinstance(two, DomainError):
            assert two.status == 409, two.body()
        else:
            # answered as recorded: it must be in the records (and with its own birth order)
            assert two.birth_id in ids, (
                f"the second birth was answered as recorded (birth_order {two.birth_order}, "
                f"event {two.event_id}) but the births table holds only {sorted(r['birth_order'] for r in rows)}"
            )
        announced = await first.fetchval(
            "SELECT count(*) FROM outbox WHERE event_type LIKE 'birth.registered%'"
        )
        assert announced == len(rows), f"{announced} birth events announced for {len(rows)} recorded births"
    finally:
        await first.close()
        await second.close()


def test_two_births_of_one_mother_at_once_are_both_recorded_or_one_refused(fresh_db: str) -> None:
    asyncio.run(_test(fresh_db))
