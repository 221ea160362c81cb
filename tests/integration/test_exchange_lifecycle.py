"""The exchange's use cases against a real PostgreSQL: agreements as data, re-sends, overdue, scheduling."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.service_layer import handlers, ordering, reconciliation
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import create_pool, migrate
from tests.exchange.exchange_helpers import A, B, C, new_person, person_event

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "migrant_exchange" / "migrations"


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(fresh_db, "migrant_exchange", MIGRATIONS)
    p = await create_pool(fresh_db, min_size=1, max_size=2)
    yield p
    await p.close()


async def _agree(
    conn: asyncpg.Connection, a: str, b: str, types: list[str], seconds: float, fields: dict
) -> None:
    await conn.execute(
        "INSERT INTO agreements VALUES ($1, $2, $3, $4, $5)", *sorted((a, b)), types, seconds, fields
    )


async def test_agreements_decide_what_flows_and_which_fields_are_seen(pool: asyncpg.Pool) -> None:
    settings = ExchangeSettings(registry_urls=f"{A}=http://a,{C}=http://c")
    async with pool.acquire() as conn, conn.transaction():
        seen = ["id_number", "name", "hukou_division", "residence_division"]
        await _agree(conn, A, B, ["person.registered.v1"], 60, {B: {"person.registered.v1": seen}})
        await _agree(conn, A, C, ["birth.registered.v1"], 60, {})
        to_b = person_event(new_person(), A, A, B)
        to_c = person_event(new_person(), A, A, C)
        assert await handlers.route_vital_event(conn, settings, to_b) == 1
        assert await handlers.route_vital_event(conn, settings, to_c) == 0  # not an agreed type for C
        row = await conn.fetchrow("SELECT * FROM notifications WHERE event_id = $1", to_b.id)
        assert set(row["payload"]) == set(seen)
        assert row["withheld_fields"] == ["birth_date", "sex"]  # named, so the receiver knows
        assert row["deadline"] - row["created_at"] < dt.timedelta(seconds=61)
        # Scheduled reconciliation takes the pairs of configured registries that an agreement connects.
        assert await reconciliation.scheduled_pairs(conn, settings) == [(C, A)]


async def test_unanswered_notifications_are_sent_again_with_backoff_then_go_overdue(
    pool: asyncpg.Pool,
) -> None:
    settings = ExchangeSettings(notification_retry_seconds=10, notification_max_attempts=3)
    async with pool.acquire() as conn, conn.transaction():
        await _agree(conn, A, B, ["*"], 3600, {})
        e = person_event(new_person(), A, A, B)
        await handlers.route_vital_event(conn, settings, e)
        note = await conn.fetchrow("SELECT * FROM notifications WHERE event_id = $1", e.id)
        assert await handlers.resend_unanswered(conn, settings) == 0  # not due yet
        await conn.execute(
            "UPDATE notifications SET next_attempt_at = now() - interval '1 s' WHERE id = $1", note["id"]
        )
        assert await handlers.resend_unanswered(conn, settings) == 1
        again = await conn.fetchrow("SELECT * FROM notifications WHERE id = $1", note["id"])
        assert again["attempts"] == 2
        assert (
            dt.timedelta(seconds=19)
            < again["next_attempt_at"] - dt.datetime.now(dt.UTC)
            <= dt.timedelta(seconds=20)
        )
        sent = await conn.fetch(
            "SELECT event_id, value FROM outbox WHERE event_type = 'exchange.notification.v1' ORDER BY id"
        )
        assert len(sent) == 2 and sent[0]["event_id"] != sent[1]["event_id"]  # a new event id each time
        assert {json.loads(bytes(s["value"]))["data"]["notification_id"] for s in sent} == {str(note["id"])}

        await conn.execute(
            "UPDATE notifications SET deadline = now() - interval '1 s' WHERE id = $1", note["id"]
        )
        assert [r["id"] for r in await repo.mark_overdue(conn)] == [note["id"]]
        assert await handlers.resend_unanswered(conn, settings) == 0  # overdue: escalated, not re-sent
        # Late feedback still closes it.
        closed = await repo.close_notification(conn, note["id"], B, "applied", [], None)
        assert closed and (await repo.get_notification(conn, note["id"]))["state"] == "applied"


async def test_events_wait_for_their_predecessor_and_a_gap_releases_them(pool: asyncpg.Pool) -> None:
    applied: list[int] = []

    async def apply(conn: asyncpg.Connection, event: object) -> None:
        applied.append(event.sequence)  # type: ignore[attr-defined]

    person = new_person()
    events = {n: person_event(person, A, A, B, sequence=n) for n in (1, 2, 3, 5)}
    async with pool.acquire() as conn, conn.transaction():
        assert not await ordering.apply_in_order(conn, events[3], apply, 60)
        assert not await ordering.apply_in_order(conn, events[2], apply, 60)
        assert await ordering.apply_in_order(conn, events[1], apply, 60)
        assert applied == [1, 2, 3]
        assert not await ordering.apply_in_order(conn, events[5], apply, -1)  # already past
        assert await ordering.release_expired_gaps(conn, apply) == 1
        assert applied == [1, 2, 3, 5]
        gap = await conn.fetchrow("SELECT * FROM discrepancies WHERE subject = $1", events[1].subject)
        assert gap["kind"] == "sequence_gap" and gap["detail"] == {
            "source": f"/registry/{A}",
            "missing_from": 4,
            "missing_to": 4,
        }
        assert (
            await conn.fetchval("SELECT parked FROM sequence_progress WHERE subject = $1", events[1].subject)
            == 0
        )
        late = person_event(
            person, A, A, B, sequence=4
        )  # arrives after all: applied, once (the inbox sees to that)
        assert await ordering.apply_in_order(conn, late, apply, 60)
        assert applied[-1] == 4
    assert uuid.UUID(str(gap["id"]))
