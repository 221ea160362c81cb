"""Agreements in the exchange against a real PostgreSQL: the file replaces the table, and a
pregnancy's closure follows its registration wherever the mother lives by then."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from services.migrant_exchange.service_layer import handlers
from services.migrant_exchange.service_layer.agreements import load_agreements
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import create_pool, migrate
from shared.identity import subject_key
from tests.exchange.exchange_helpers import SECRET, A, B, C, event, new_person, person_event

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "migrant_exchange" / "migrations"


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(fresh_db, "migrant_exchange", MIGRATIONS)
    p = await create_pool(fresh_db, min_size=1, max_size=2)
    yield p
    await p.close()


def _settings(tmp_path: Path, entries: list[dict[str, Any]], name: str) -> ExchangeSettings:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(entries))
    return ExchangeSettings(agreements_file=str(path), subject_key_secret=SECRET.decode())


async def test_loading_replaces_the_table_so_a_removed_agreement_stops_flowing(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    both = [
        {"division_a": A, "division_b": B, "event_types": ["person.registered.v1"], "deadline_seconds": 60},
        {"division_a": A, "division_b": C, "event_types": ["*"]},
    ]
    first = _settings(tmp_path, both, "first")
    async with pool.acquire() as conn:
        assert await load_agreements(conn, first) == 2
        async with conn.transaction():
            assert await handlers.route_vital_event(conn, first, person_event(new_person(), A, A, C)) == 1
        # The next start's file no longer lists A <-> C, and changes A <-> B's deadline.
        second = _settings(tmp_path, [{**both[0], "deadline_seconds": 30}], "second")
        assert await load_agreements(conn, second) == 1
        rows = await conn.fetch("SELECT division_a, division_b, deadline_seconds FROM agreements")
        assert [tuple(r) for r in rows] == [(A, B, 30.0)]
        async with conn.transaction():
            to_c = person_event(new_person(), A, A, C)
            assert await handlers.route_vital_event(conn, second, to_c) == 0
            assert await handlers.route_vital_event(conn, second, person_event(new_person(), A, A, B)) == 1
        assert await conn.fetchval("SELECT count(*) FROM notifications WHERE event_id = $1", to_c.id) == 0
        # The roster still follows her: only the flow to C stopped.
        assert (
            await conn.fetchval("SELECT residence_division FROM roster WHERE subject = $1", to_c.subject) == C
        )


async def test_a_pregnancy_closure_reaches_who_received_its_registration_after_she_returned_home(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, [{"division_a": "*", "division_b": "*"}], "all")
    mother = new_person()
    subject = subject_key(mother, SECRET)
    pregnancy = str(uuid.uuid4())
    move = {
        "migration_id": str(uuid.uuid4()),
        "id_number": mother,
        "name": "陈静",
        "hukou_division": A,
        "from_division": C,
        "to_division": A,
        "migration_date": "2026-05-01",
    }
    async with pool.acquire() as conn:
        await load_agreements(conn, settings)
        async with conn.transaction():
            await handlers.route_vital_event(conn, settings, person_event(mother, A, A, C))
            registered = event(
                "pregnancy.registered.v1",
                A,
                {
                    "pregnancy_id": pregnancy,
                    "mother_id_number": mother,
                    "registered_in": A,
                    "registered_on": "2026-03-01",
                },
                subject,
                2,
                origin=A,
                destination=C,
            )
            assert await handlers.route_vital_event(conn, settings, registered) == 1  # C, where she lives
            returned = event("migration.returned.v1", A, move, subject, 3, origin=A, destination=A)
            await handlers.route_vital_event(conn, settings, returned)
            closed = event(
                "pregnancy.closed.v1",
                A,
                {
                    "pregnancy_id": pregnancy,
                    "mother_id_number": mother,
                    "closed_on": "2026-09-30",
                    "outcome": "birth",
                },
                subject,
                4,
                origin=A,
                destination=A,
            )
            assert await handlers.route_vital_event(conn, settings, closed) == 1
            targets = await conn.fetch(
                "SELECT target_division FROM notifications WHERE event_id = $1", closed.id
            )
            assert [r["target_division"] for r in targets] == [C]
            # A later event of hers stays home: only the closure followed the registration.
            later = person_event(mother, A, A, A, sequence=5)
            assert await handlers.route_vital_event(conn, settings, later) == 0
