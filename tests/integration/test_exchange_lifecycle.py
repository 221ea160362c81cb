"""The exchange's use cases against a real PostgreSQL: agreements as data (the file replaces the table),
re-sends, overdue, scheduling, and a pregnancy's closure that follows its registration."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.service_layer import handlers, ordering, reconciliation
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

    async def refuse(*refused: object) -> None:
        raise AssertionError(f"nothing here is refused: {refused}")

    person = new_person()
    events = {n: person_event(person, A, A, B, sequence=n) for n in (1, 2, 3, 5)}
    async with pool.acquire() as conn, conn.transaction():
        assert not await ordering.apply_in_order(conn, events[3], apply, 60, refuse)
        assert not await ordering.apply_in_order(conn, events[2], apply, 60, refuse)
        assert await ordering.apply_in_order(conn, events[1], apply, 60, refuse)
        assert applied == [1, 2, 3]
        assert not await ordering.apply_in_order(conn, events[5], apply, -1, refuse)  # already past
        assert await ordering.release_expired_gaps(conn, apply, refuse) == 1
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
        assert await ordering.apply_in_order(conn, late, apply, 60, refuse)
        assert applied[-1] == 4
        filled = await conn.fetchrow("SELECT *, ctid FROM discrepancies WHERE id = $1", gap["id"])
        assert filled["state"] == "resolved" and filled["resolved_at"] is not None
        assert filled["resolution"]["action"] == "filled"
        assert filled["detail"] == {**gap["detail"], "arrived": [4], "still_missing": 0}
        # Applied again without the inbox (a replay), and an older event: the case is not written.
        assert await ordering.apply_in_order(conn, late, apply, 60, refuse)
        assert await ordering.apply_in_order(conn, events[1], apply, 60, refuse)
        assert applied[-2:] == [4, 1]
        again = await conn.fetchrow("SELECT *, ctid FROM discrepancies WHERE id = $1", gap["id"])
        assert dict(again) == dict(filled)  # the same row version (ctid): no update at all
    assert uuid.UUID(str(gap["id"]))


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
            earlier = person_event(new_person(), A, A, C)
            assert await handlers.route_vital_event(conn, first, earlier) == 1
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
        # What was sent before the removal is not sent again; it waits for its answer or its deadline.
        sends = "SELECT count(*) FROM outbox WHERE event_type = 'exchange.notification.v1'"
        before = await conn.fetchval(sends)
        await conn.execute("UPDATE notifications SET next_attempt_at = now() - interval '1 s'")
        async with conn.transaction():
            assert await handlers.resend_unanswered(conn, second) == 1  # A -> B's, still agreed
        assert await conn.fetchval(sends) == before + 1
        stopped = await conn.fetchrow("SELECT * FROM notifications WHERE event_id = $1", earlier.id)
        assert (
            stopped["state"] == "pending" and stopped["next_attempt_at"] is None and stopped["attempts"] == 1
        )
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
