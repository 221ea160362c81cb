"""The bulk rebuild of the exchange roster ends where the consumer's handler ends, event by event.

Hypothesis draws histories of registrations and migrations (departures, arrivals, returns) of a
few people, produced by two registries, with event times out of step with arrival order (an
older event must not undo a newer move) and a redelivered event; each history goes through the
exchange's consumer handler (ordering, roster, routing) one event at a time into one database
and through ``rebuild_from`` into another (real PostgreSQL). Roster and inbox must be the same.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.embedded import EmbeddedPostgres
from services.migrant_exchange.entrypoints.consumer import event_consumer
from services.migrant_exchange.settings import ExchangeSettings
from shared.consumer import EventConsumer
from shared.events import payloads as p
from shared.events.envelope import Envelope, new_event_id
from shared.identity import compose_id_number, subject_key
from tests.rebuild_kit import both_ways, migrated_pair

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "migrant_exchange" / "migrations"
SECRET = "roster-rebuild-test"  # noqa: S105 - a test's own subject key secret
REGISTRIES = ["320412", "440703"]
PLACES = ["320412", "440703", "110101"]
PEOPLE = [compose_id_number("110101", dt.date(1980, 1, 1) + dt.timedelta(days=i), i, "M") for i in range(3)]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@st.composite
def histories(draw: st.DrawFn) -> list[Envelope[Any]]:
    events: list[Envelope[Any]] = []
    sequences: dict[tuple[str, str], int] = {}
    for _ in range(draw(st.integers(1, 16))):
        if events and draw(st.integers(0, 9)) == 0:
            events.append(draw(st.sampled_from(events)))  # redelivered
            continue
        person, producer = draw(st.sampled_from(PEOPLE)), draw(st.sampled_from(REGISTRIES))
        subject = subject_key(person, SECRET.encode())
        kind = draw(
            st.sampled_from(
                [
                    "person.registered.v1",
                    "migration.departed.v1",
                    "migration.arrived.v1",
                    "migration.returned.v1",
                ]
            )
        )
        hukou = draw(st.sampled_from(PLACES))
        if kind == "person.registered.v1":
            data: Any = p.PersonRegisteredV1(
                id_number=person,
                name="甲",
                sex="M",
                birth_date=dt.date(1980, 1, 1),
                hukou_division=hukou,
                residence_division=draw(st.sampled_from(PLACES)),
            )
        else:
            to = draw(st.sampled_from(PLACES))
            data = getattr(
                p,
                {
                    "migration.departed.v1": "MigrationDepartedV1",
                    "migration.arrived.v1": "MigrationArrivedV1",
                    "migration.returned.v1": "MigrationReturnedV1",
                }[kind],
            )(
                migration_id=uuid.uuid4(),
                id_number=person,
                name="甲",
                hukou_division=hukou,
                from_division=draw(st.sampled_from([x for x in PLACES if x != to])),
                to_division=to,
                migration_date=dt.date(2026, 1, 1),
            )
        sequences[(subject, producer)] = sequence = sequences.get((subject, producer), 0) + 1
        events.append(
            Envelope[type(data)](  # type: ignore[misc]
                id=new_event_id(),
                source=f"/registry/{producer}",
                type=kind,
                subject=subject,
                time=T0 + dt.timedelta(minutes=draw(st.integers(0, 60))),  # out of step with the order
                dataschema=f"urn:test:{kind}",
                sequence=sequence,
                origin=draw(st.sampled_from([None, *PLACES])),
                data=data,
            )
        )
    return events


async def _state(conn: asyncpg.Connection) -> dict[str, Any]:
    roster = await conn.fetch(
        """SELECT subject, hukou_division, residence_division, residence_as_of, moves, last_event_at
           FROM roster ORDER BY subject"""
    )
    inbox = await conn.fetch("SELECT consumer, event_id FROM inbox ORDER BY 1, 2")
    return {"roster": [dict(r) for r in roster], "inbox": [tuple(r) for r in inbox]}


def _consumer(pool: asyncpg.Pool, dsn: str) -> EventConsumer:
    return event_consumer(pool, ExchangeSettings(database_url=dsn, subject_key_secret=SECRET))


@pytest.fixture(scope="module")
def two_databases(pg: EmbeddedPostgres) -> tuple[str, str]:
    return migrated_pair(pg, "migrant_exchange", MIGRATIONS)


async def _both(databases: tuple[str, str], events: list[Envelope[Any]]) -> tuple[dict[str, Any], ...]:
    return await both_ways(
        databases,
        events,
        _consumer,
        "roster, inbox, sequence_progress, parked_events, notifications, outbox",
        _state,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=histories())
def test_bulk_roster_rebuild_equals_the_handler_event_by_event(
    two_databases: tuple[str, str], events: list[Envelope[Any]]
) -> None:
    one_by_one, bulk = asyncio.run(_both(two_databases, events))
    assert bulk == one_by_one
