"""Retention (issue 17 point 7): old rows are purged by each service's background task, young ones kept."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.migrant_exchange.adapters import repository
from services.migrant_exchange.adapters import retention as exchange_retention
from services.migrant_exchange.settings import ExchangeSettings
from services.registry.settings import RegistrySettings
from shared import dead_letters, retention
from shared.db import create_pool, migrate

SERVICES = Path(__file__).resolve().parents[2] / "services"
NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


async def _pool(dsn: str, service: str) -> asyncpg.Pool:
    await migrate(dsn, service, SERVICES / service / "migrations")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    return pool


@pytest.fixture
async def exchange(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await _pool(fresh_db, "migrant_exchange")
    yield pool
    await pool.close()


async def _answer(conn: asyncpg.Connection, key: str, at: dt.datetime) -> None:
    await conn.execute(
        """INSERT INTO idempotency_keys (client_id, key, request_hash, status_code, body, content_type, created_at)
           VALUES ('reg-320412', $1, 'h', 201, '\\x7b7d'::bytea, 'application/json', $2)""",
        key,
        at,
    )


async def _dead_letter(conn: asyncpg.Connection, reason: str, at: dt.datetime) -> None:
    await conn.execute(
        """INSERT INTO dead_letters (consumer, topic, partition, "offset", value, reason, created_at)
           VALUES ('c', 'vital.birth.v1', 0, 1, '\\x00'::bytea, $1, $2)""",
        reason,
        at,
    )


async def _notification(
    conn: asyncpg.Connection, state: str, answered: dt.datetime | None, *, sent: dt.datetime = NOW - 60 * DAY
) -> uuid.UUID:
    """A notification ``sent`` then (its feedback deadline 7 days later), in ``state``."""
    nid = uuid.uuid4()
    await conn.execute(
        """INSERT INTO notifications (id, target_division, source_division, subject, event_id, event_type,
                                      event_sequence, event_time, payload, state, deadline, created_at, feedback_at)
           VALUES ($1, '440703', '320412', 's', $2, 'birth.registered.v1', 1, $3, '{"x": 1}'::jsonb, $4,
                   $3::timestamptz + interval '7 days', $3, $5)""",
        nid,
        uuid.uuid4(),
        sent,
        state,
        answered,
    )
    return nid


async def _parked(conn: asyncpg.Connection, subject: str, sequence: int, at: dt.datetime) -> None:
    await conn.execute(
        """INSERT INTO sequence_progress (subject, source, last_sequence, parked) VALUES ($1, '/registry/320412', 1, 0)
           ON CONFLICT DO NOTHING""",
        subject,
    )
    await conn.execute(
        """WITH p AS (INSERT INTO parked_events (subject, source, sequence, event_id, value, parked_at, deadline)
                      VALUES ($1, '/registry/320412', $2, $3, '\\x00'::bytea, $4, $4::timestamptz + interval '5 minutes')
                      RETURNING 1)
           UPDATE sequence_progress SET parked = parked + 1 WHERE subject = $1""",
        subject,
        sequence,
        uuid.uuid4(),
        at,
    )


async def _census(conn: asyncpg.Connection, letter_id: str, at: dt.datetime) -> None:
    await conn.execute(
        """INSERT INTO dead_letter_census (id, service, topic, reason, detail, created_at)
           VALUES ($1, 'verification', 'vital.correction.v1', 'invalid event', 'invalid event', $2)""",
        letter_id,
        at,
    )


async def test_the_exchange_purges_what_is_past_retention_and_keeps_the_rest(exchange: asyncpg.Pool) -> None:
    settings = ExchangeSettings()  # the defaults the README states
    assert (settings.retention_idempotency_seconds, settings.retention_dead_letter_days) == (86400, 90)
    assert (settings.retention_notification_payload_days, settings.retention_parked_event_days) == (30, 30)
    assert settings.retention_unanswered_payload_days == 30
    async with exchange.acquire() as conn:
        await _answer(conn, "old", NOW - 2 * DAY)
        await _answer(conn, "young", NOW - dt.timedelta(hours=20))
        await _dead_letter(conn, "old", NOW - 91 * DAY)
        await _dead_letter(conn, "young", NOW - 89 * DAY)
        old_conflict = await _notification(conn, "conflict", NOW - 31 * DAY)
        young_rejected = await _notification(conn, "rejected", NOW - 29 * DAY)
        unanswered = await _notification(conn, "overdue", None, sent=NOW - 20 * DAY)  # late answer awaited
        await _parked(conn, "a" * 32, 3, NOW - 31 * DAY)
        await _parked(conn, "a" * 32, 4, NOW - 29 * DAY)
        await _parked(conn, "b" * 32, 5, NOW - 40 * DAY)
        await _census(conn, "old", NOW - 91 * DAY)
        await _census(conn, "young", NOW - 1 * DAY)

    purges = retention.shared_purges(settings) + exchange_retention.purges(settings)
    purged = await retention.purge(exchange, purges)
    assert purged == {
        "idempotency_answers": 1,
        "dead_letters": 1,
        "notification_payloads": 1,
        "unanswered_payloads": 0,
        "parked_events": 2,
        "dead_letter_census": 1,
    }
    async with exchange.acquire() as conn:
        assert [r["key"] for r in await conn.fetch("SELECT key FROM idempotency_keys")] == ["young"]
        assert [r["reason"] for r in await conn.fetch("SELECT reason FROM dead_letters")] == ["young"]
        payloads = {r["id"]: r["payload"] for r in await conn.fetch("SELECT id, payload FROM notifications")}
        assert payloads[old_conflict] is None
        assert payloads[young_rejected] is not None and payloads[unanswered] is not None
        assert await conn.fetchval("SELECT count(*) FROM notifications") == 3  # the rows stay, counted
        parked = await conn.fetch("SELECT subject, sequence FROM parked_events")
        assert [(r["subject"], r["sequence"]) for r in parked] == [("a" * 32, 4)]
        counts = {r["subject"]: r["parked"] for r in await conn.fetch("SELECT * FROM sequence_progress")}
        assert counts == {"a" * 32: 1, "b" * 32: 0}  # each pair's count follows its parked events
        assert [r["id"] for r in await conn.fetch("SELECT id FROM dead_letter_census")] == ["young"]
    assert set((await retention.purge(exchange, purges)).values()) == {0}  # nothing more to purge


async def test_a_registrys_background_task_purges_in_batches(fresh_db: str) -> None:
    pool = await _pool(fresh_db, "registry")
    settings = RegistrySettings(retention_interval_seconds=0.05, retention_idempotency_seconds=3600)
    try:
        async with pool.acquire() as conn:
            await conn.executemany(
                """INSERT INTO idempotency_keys (client_id, key, request_hash, status_code, body, content_type,
                                                 created_at)
                   VALUES ('reg-320412', $1, 'h', 201, '\\x7b7d'::bytea, 'application/json', $2)""",
                [(f"old-{i}", NOW - dt.timedelta(hours=2)) for i in range(12_000)],  # more than one batch
            )
            await _answer(conn, "young", NOW - dt.timedelta(minutes=10))
            await _dead_letter(conn, "old", NOW - 100 * DAY)
        task = asyncio.create_task(retention.run(pool, settings, retention.shared_purges(settings)))
        try:
            for _ in range(200):
                async with pool.acquire() as conn:
                    left = await conn.fetchval("SELECT count(*) FROM idempotency_keys")
                    dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
                if (left, dead) == (1, 0):
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
        assert (left, dead) == (1, 0)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT key FROM idempotency_keys") == "young"
    finally:
        await pool.close()


async def _kept(pool: asyncpg.Pool, value: bytes, at: dt.datetime, *, published: bool) -> None:
    """A message dead-lettered ``at`` as a consumer does (``shared.dead_letters.keep``): its row and
    its copy queued for ``<topic>.dlq``, published or not."""
    msg = ConsumerRecord("vital.pregnancy.v1", 0, 7, 0, 0, b"k", value, None, 1, len(value), [])
    async with pool.acquire() as conn, conn.transaction():
        await dead_letters.keep(conn, msg, "invalid event", consumer="c", service="registry")
        await conn.execute("UPDATE dead_letters SET created_at = $1 WHERE value = $2", at, value)
        await conn.execute(
            "UPDATE outbox SET created_at = $1, published_at = CASE WHEN $3 THEN $1::timestamptz END WHERE value = $2",
            at,
            value,
            published,
        )


async def test_a_dead_letters_copy_in_the_outbox_goes_with_it(fresh_db: str) -> None:
    """A dead letter is queued for ``<topic>.dlq`` through the outbox: that copy (the whole message,
    a pregnancy's data included) is purged with the letter once published, not kept for ever; a
    copy the relay has not published yet stays, and its letter with it."""
    await migrate(fresh_db, "registry", SERVICES / "registry" / "migrations")
    pool = await create_pool(fresh_db, min_size=1, max_size=2)  # the services' pool: jsonb as dicts
    settings = RegistrySettings()
    try:
        await _kept(pool, b'{"mother_id_number": "old"}', NOW - 91 * DAY, published=True)
        await _kept(pool, b'{"mother_id_number": "young"}', NOW - 89 * DAY, published=True)
        await _kept(pool, b'{"mother_id_number": "unsent"}', NOW - 91 * DAY, published=False)
        purged = await retention.purge(pool, retention.shared_purges(settings))
        async with pool.acquire() as conn:
            letters = {bytes(r["value"]) for r in await conn.fetch("SELECT value FROM dead_letters")}
            copies = {bytes(r["value"]) for r in await conn.fetch("SELECT value FROM outbox")}
        assert copies == {b'{"mother_id_number": "young"}', b'{"mother_id_number": "unsent"}'}
        assert letters == copies and purged["dead_letters"] == 1
    finally:
        await pool.close()


async def test_a_conflicts_values_go_with_the_notifications_payload(exchange: asyncpg.Pool) -> None:
    """A ``conflict`` answer names each differing field with both sides' values (``ours``,
    ``theirs``: the person's data). They are purged with the payload, the field names kept for the
    operator's view; a young answer keeps them, and so does one purged before they were."""
    settings = ExchangeSettings()
    conflicts = '[{"field": "name", "ours": "Li Na", "theirs": "Li Nan"}]'
    async with exchange.acquire() as conn:
        old = await _notification(conn, "conflict", NOW - 31 * DAY)
        emptied = await _notification(conn, "conflict", NOW - 31 * DAY)
        young = await _notification(conn, "conflict", NOW - 29 * DAY)
        await conn.execute("UPDATE notifications SET conflicts = $1::text::jsonb", conflicts)
        await conn.execute("UPDATE notifications SET payload = NULL WHERE id = $1", emptied)
    await retention.purge(exchange, exchange_retention.purges(settings))
    async with exchange.acquire() as conn:
        kept = {
            r["id"]: json.loads(r["c"])
            for r in await conn.fetch("SELECT id, conflicts::text c FROM notifications")
        }
    assert kept[old] == kept[emptied] == [{"field": "name"}]
    assert kept[young] == json.loads(conflicts)


async def test_an_unanswered_notifications_payload_is_not_kept_for_ever(exchange: asyncpg.Pool) -> None:
    """A notification nobody answers goes ``overdue`` at its deadline and is not sent again; its
    payload (the person's data) waits for a late answer or a late pick-up over REST only so long
    after the deadline, then goes. The notification stays, overdue (operations: its ids, state,
    deadline and sends), and a late answer still closes it. One still ``pending`` (the sweep has
    not marked it) goes the same way; a young overdue one keeps its payload."""
    settings = ExchangeSettings()
    async with exchange.acquire() as conn:
        old = await _notification(conn, "overdue", None, sent=NOW - 38 * DAY)  # deadline 31 days ago
        ancient = await _notification(conn, "overdue", None, sent=NOW - 400 * DAY)
        unswept = await _notification(conn, "pending", None, sent=NOW - 38 * DAY)
        young = await _notification(conn, "overdue", None, sent=NOW - 36 * DAY)  # deadline 29 days ago
        await conn.execute(
            "UPDATE notifications SET attempts = 5, overdue_at = deadline WHERE state = 'overdue'"
        )
    await retention.purge(exchange, exchange_retention.purges(settings))
    async with exchange.acquire() as conn:
        rows = {r["id"]: r for r in await conn.fetch("SELECT * FROM notifications")}
        assert len(rows) == 4  # the rows stay, counted
        assert rows[old]["payload"] is None and rows[ancient]["payload"] is None
        assert rows[unswept]["payload"] is None
        assert rows[young]["payload"] is not None
        assert (rows[old]["state"], rows[old]["attempts"], rows[old]["event_type"]) == (
            "overdue",
            5,
            "birth.registered.v1",
        )
        assert rows[old]["overdue_at"] == rows[old]["deadline"]
        closed = await repository.close_notification(conn, old, "440703", "rejected", [], "late")
        assert closed  # a late answer still closes it
        assert await conn.fetchval("SELECT state FROM notifications WHERE id = $1", old) == "rejected"
    assert set((await retention.purge(exchange, exchange_retention.purges(settings))).values()) == {0}


async def test_an_answers_reason_goes_with_the_notifications_payload(exchange: asyncpg.Pool) -> None:
    """A ``rejected`` or ``conflict`` answer's reason is the addressee's free text about the person
    (a REST-only jurisdiction writes up to 500 characters there): purged with the payload, kept by a
    young answer, and purged too from one whose payload went before it."""
    settings = ExchangeSettings()
    said = "李娜 110101199003070022 is not registered here"
    async with exchange.acquire() as conn:
        old = await _notification(conn, "rejected", NOW - 31 * DAY)
        emptied = await _notification(conn, "rejected", NOW - 31 * DAY)
        young = await _notification(conn, "rejected", NOW - 29 * DAY)
        await conn.execute("UPDATE notifications SET reason = $1", said)
        await conn.execute("UPDATE notifications SET payload = NULL WHERE id = $1", emptied)
    await retention.purge(exchange, exchange_retention.purges(settings))
    async with exchange.acquire() as conn:
        kept = {r["id"]: r["reason"] for r in await conn.fetch("SELECT id, reason FROM notifications")}
    assert kept[old] is None and kept[emptied] is None
    assert kept[young] == said


async def test_corrections_kept_ahead_of_their_certificate_are_not_kept_for_ever(fresh_db: str) -> None:
    """Verification keeps an issuer's correction of a certificate it has not seen yet
    (``corrections_ahead``: the corrected name, status, children, validity) until the certificate
    comes. One whose certificate never comes goes after RETENTION_CORRECTION_AHEAD_DAYS; a young
    one waits on."""
    from services.verification.adapters import retention as verification_retention
    from services.verification.settings import VerificationSettings

    pool = await _pool(fresh_db, "verification")
    try:
        async with pool.acquire() as conn:
            for number, at in (("320412-2026-OLD", NOW - 31 * DAY), ("320412-2026-YOUNG", NOW - 29 * DAY)):
                await conn.execute(
                    """INSERT INTO corrections_ahead (certificate_number, corrector, changes, corrected_at, recorded_at)
                       VALUES ($1, '320412', '{"holder_name": "李娜"}'::jsonb, $2, $2)""",
                    number,
                    at,
                )
        settings = VerificationSettings()
        purged = await retention.purge(pool, verification_retention.purges(settings))
        assert purged["corrections_ahead"] == 1
        async with pool.acquire() as conn:
            left = [
                r["certificate_number"]
                for r in await conn.fetch("SELECT certificate_number FROM corrections_ahead")
            ]
        assert left == ["320412-2026-YOUNG"]
    finally:
        await pool.close()


async def test_name_corrections_kept_for_certificates_to_come_are_not_kept_for_ever(fresh_db: str) -> None:
    """Verification keeps an issuer's correction of a holder's name (``name_corrections``) for
    her certificates of that issuer made before it and not seen yet. It goes after
    RETENTION_CORRECTION_AHEAD_DAYS as a correction ahead of its certificate does; a young one stays."""
    from services.verification.adapters import retention as verification_retention
    from services.verification.settings import VerificationSettings

    pool = await _pool(fresh_db, "verification")
    try:
        async with pool.acquire() as conn:
            for holder, at in (("old", NOW - 31 * DAY), ("young", NOW - 29 * DAY)):
                await conn.execute(
                    """INSERT INTO name_corrections (holder_subject, corrector, holder_name, corrected_at, recorded_at)
                       VALUES ($1, '320412', '李娜', $2, $2)""",
                    holder,
                    at,
                )
        purged = await retention.purge(pool, verification_retention.purges(VerificationSettings()))
        assert purged["name_corrections"] == 1
        async with pool.acquire() as conn:
            left = [
                r["holder_subject"] for r in await conn.fetch("SELECT holder_subject FROM name_corrections")
            ]
        assert left == ["young"]
    finally:
        await pool.close()
