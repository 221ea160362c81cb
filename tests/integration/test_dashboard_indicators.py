"""Indicators, flows and the operations picture computed on a real exchange database."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.adapters import stats
from services.migrant_exchange.service_layer import indicators as ind
from shared.db import migrate

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "migrant_exchange" / "migrations"
A, B, C = "320412", "440703", "110101"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
async def conn(fresh_db: str) -> AsyncIterator[asyncpg.Connection]:
    await migrate(fresh_db, "migrant_exchange", MIGRATIONS)
    c = await asyncpg.connect(fresh_db)
    try:
        yield c
    finally:
        await c.close()


async def _roster(conn: asyncpg.Connection, subject: str, hukou: str, residence: str) -> None:
    await conn.execute(
        """INSERT INTO roster (subject, hukou_division, residence_division, last_event_at)
           VALUES ($1, $2, $3, now())""",
        subject,
        hukou,
        residence,
    )


async def _notification(
    conn: asyncpg.Connection,
    target: str,
    *,
    created_ago: float,
    deadline_in: float,
    answered_after: float | None,
    state: str = "applied",
) -> None:
    created = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=created_ago)
    await conn.execute(
        """INSERT INTO notifications (id, target_division, source_division, subject, event_id, event_type,
                                      event_sequence, event_time, payload, state, deadline, created_at, feedback_at)
           VALUES ($1, $2, $3, 's', $4, 'birth.registered.v1', 1, $5, '{}'::jsonb, $6, $7, $5, $8)""",
        uuid.uuid4(),
        target,
        A if target != A else B,
        uuid.uuid4(),
        created,
        state,
        created + dt.timedelta(seconds=deadline_in),
        created + dt.timedelta(seconds=answered_after) if answered_after is not None else None,
    )


async def test_indicators_per_jurisdiction(conn: asyncpg.Connection) -> None:
    # Four people registered at A live at B, one lives at C; one registered at B lives at A.
    for i in range(4):
        await _roster(conn, f"a2b{i}", A, B)
    await _roster(conn, "a2c", A, C)
    await _roster(conn, "b2a", B, A)
    await _roster(conn, "stay", A, A)
    # A issued valid certificates to two of its out-migrants; a third was revoked.
    for subject, revoked in (("a2b0", None), ("a2b1", None), ("a2b2", NOW - dt.timedelta(hours=1))):
        await conn.execute(
            """INSERT INTO certificate_stats (certificate_number, issuer, subject, issued_at, valid_until, revoked_at)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            f"{A}-2026-{subject.upper():0>8}",
            A,
            subject,
            NOW - dt.timedelta(hours=2),
            (NOW + dt.timedelta(days=300)).date(),
            revoked,
        )
    # B was sent 4 notifications in the last 24 h: 2 answered in time (10 s and 30 s after the
    # event), 1 answered late, 1 overdue without an answer; plus one pending not yet due.
    await _notification(conn, B, created_ago=3600, deadline_in=60, answered_after=10)
    await _notification(conn, B, created_ago=3600, deadline_in=60, answered_after=30)
    await _notification(conn, B, created_ago=3600, deadline_in=60, answered_after=120)
    await _notification(conn, B, created_ago=3600, deadline_in=60, answered_after=None, state="overdue")
    await _notification(conn, B, created_ago=10, deadline_in=600, answered_after=None, state="pending")
    # In the 24 h before, B answered its only notification in time: the trend is down.
    await _notification(conn, B, created_ago=30 * 3600, deadline_in=60, answered_after=5)

    result = await ind.compute_indicators(conn, ind.Period.ending(None, dt.timedelta(hours=24)))
    rows = {r["jurisdiction"]: r for r in result["jurisdictions"]}
    a, b = rows[A], rows[B]
    assert (a["out_migrants"], a["in_migrants"]) == (5, 1)
    assert (b["out_migrants"], b["in_migrants"]) == (1, 4)
    assert rows[C]["in_migrants"] == 1
    assert a["certificate_issuance_rate"] == 0.4  # 2 valid of 5 out-migrants
    assert a["certificates_issued"] == 3
    assert b["notifications_received"] == 5 and b["notifications_due"] == 4
    assert b["timely_feedback_rate"] == 0.5
    assert b["previous"]["timely_feedback_rate"] == 1.0 and b["trend"]["timely_feedback_rate"] == -0.5
    assert b["feedback_median_seconds"] == 30.0  # applied feedback times 10, 30, 120
    assert 115 < b["feedback_p99_seconds"] <= 120
    assert a["timely_feedback_rate"] is None  # nothing addressed to A: no data, not 0 %
    # No case is open, yet no reconciliation ever ran: accuracy is "not available", not 100 %.
    assert result["discrepancies_available"] is True
    assert a["open_discrepancies"] == 0 and a["reconciliation_accuracy"] is None
    # Aggregates only: no subject key appears anywhere in the answer.
    assert "a2b0" not in repr(result)

    one = await ind.compute_indicators(conn, ind.Period.ending(None, dt.timedelta(hours=24)), B)
    assert [r["jurisdiction"] for r in one["jurisdictions"]] == [B]


async def _certificate(
    conn: asyncpg.Connection,
    subject: str,
    issuer: str,
    issued_hours_ago: float,
    **when: dt.datetime | dt.date,
) -> str:
    number = f"{issuer}-2026-{subject.upper():0>8}"
    await conn.execute(
        """INSERT INTO certificate_stats (certificate_number, issuer, subject, issued_at, valid_until, revoked_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        number,
        issuer,
        subject,
        NOW - dt.timedelta(hours=issued_hours_ago),
        when.get("valid_until", (NOW + dt.timedelta(days=300)).date()),
        when.get("revoked_at"),
    )
    return number


async def _verified(conn: asyncpg.Connection, number: str, division: str, hours_ago: float) -> None:
    await conn.execute(
        """INSERT INTO verification_stats (disclosure_id, certificate_number, issuer, division, result, verified_at)
           VALUES ($1, $2, $3, $4, 'valid', $5)""",
        uuid.uuid4(),
        number,
        number[:6],
        division,
        NOW - dt.timedelta(hours=hours_ago),
    )


async def test_verification_rate_per_destination_and_period(conn: asyncpg.Connection) -> None:
    """验证率 of a destination: its in-migrants' certificates in force in the period, verified
    there at least once in the period / those certificates. Expected figures worked out by hand."""
    for i in range(4):
        await _roster(conn, f"x{i}", A, B)
    await _roster(conn, "y0", A, C)
    x0 = await _certificate(conn, "x0", A, 40)
    x1 = await _certificate(conn, "x1", A, 2)
    x2 = await _certificate(conn, "x2", A, 40, revoked_at=NOW - dt.timedelta(hours=1))  # in force until then
    x3 = await _certificate(conn, "x3", A, 40, valid_until=(NOW - dt.timedelta(days=2)).date())  # expired
    y0 = await _certificate(conn, "y0", A, 40)
    await _certificate(conn, "x0b", C, 40)  # issued by a place that is not x0's origin: not hers to count
    await conn.execute("UPDATE certificate_stats SET subject = 'x0' WHERE subject = 'x0b'")
    await _verified(conn, x0, B, 1)
    await _verified(conn, x0, B, 1.5)  # twice: one certificate verified
    await _verified(conn, x2, B, 3)  # before its revocation
    await _verified(conn, x1, C, 1)  # by a client of another place: not B's verification
    await _verified(conn, y0, C, 1)
    await _verified(conn, x3, B, 30)  # the previous period
    await _verified(conn, f"{A}-2026-UNKNOWN0", B, 1)  # a certificate of nobody in B's roster: volume only

    period = ind.Period.ending(NOW, dt.timedelta(hours=24))
    rows = {r["jurisdiction"]: r for r in (await ind.compute_indicators(conn, period))["jurisdictions"]}
    b, c = rows[B], rows[C]
    # B now: x0, x1, x2 in force (x3 expired two days ago) -> x0 and x2 verified at B: 2 of 3.
    assert (b["certificates_held"], b["certificates_verified"], b["verifications"]) == (3, 2, 4)
    assert b["verification_rate"] == 0.6667
    # B the day before: x0, x2, x3 in force (x1 not yet issued) -> x3 verified: 1 of 3.
    assert b["previous"]["verification_rate"] == 0.3333
    assert b["trend"]["verification_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert (c["certificates_held"], c["certificates_verified"], c["verification_rate"]) == (1, 1, 1.0)
    assert rows[A]["certificates_held"] == 0 and rows[A]["verification_rate"] is None  # no in-migrants
    assert "x0" not in repr(rows) and x0 not in repr(rows)  # counts only


async def test_discrepancies_are_counted_when_reconciliation_has_its_table(conn: asyncpg.Connection) -> None:
    for i in range(4):
        await _roster(conn, f"a2b{i}", A, B)
    # Reconciliation's cases: two open about one subject, one resolved about another.
    await conn.execute(
        """INSERT INTO discrepancies (id, kind, division_a, division_b, subject, record_kind, record_key,
                                      state, resolved_at) VALUES
           ($1, 'missing', $4, $5, 'a2b0', 'birth', 'k1', 'open', NULL),
           ($2, 'field_conflict', $4, $5, 'a2b0', 'person', 'k2', 'open', NULL),
           ($3, 'missing', $4, $5, 'a2b1', 'birth', 'k3', 'resolved', now())""",
        uuid.uuid4(),
        uuid.uuid4(),
        uuid.uuid4(),
        A,
        B,
    )
    period = ind.Period.ending(None, dt.timedelta(hours=24))
    before_run = {r["jurisdiction"]: r for r in (await ind.compute_indicators(conn, period))["jurisdictions"]}
    assert before_run[A]["open_discrepancies"] == 2 and before_run[A]["reconciliation_accuracy"] is None
    await conn.execute(
        """INSERT INTO reconciliations (id, division_a, division_b, trigger, state, buckets, finished_at)
           VALUES ($1, $2, $3, 'request', 'finished', 16, now())""",
        uuid.uuid4(),
        A,
        B,
    )
    result = await ind.compute_indicators(conn, period)
    rows = {r["jurisdiction"]: r for r in result["jurisdictions"]}
    assert result["discrepancies_available"] is True
    assert rows[A]["open_discrepancies"] == 2 and rows[B]["open_discrepancies"] == 2
    assert rows[A]["reconciliation_accuracy"] == 0.75  # one of four shared subjects differs
    picture = await ind.operations_picture(conn)
    assert picture["discrepancies"]["open"] == 2 and len(picture["discrepancies"]["oldest"]) == 2


async def test_flows_and_the_operations_picture(conn: asyncpg.Connection) -> None:
    for i in range(3):
        await _roster(conn, f"a2b{i}", A, B)
    await _roster(conn, "b2a", B, A)
    await _roster(conn, "stay", A, A)
    flows = await ind.compute_flows(conn, dense=True)
    assert flows["divisions"] == [A, B] and flows["total"] == 4
    assert flows["flows"][0] == {"origin": A, "destination": B, "count": 3}
    assert flows["matrix"] == [[0, 3], [1, 0]]

    await _notification(conn, B, created_ago=600, deadline_in=60, answered_after=None, state="overdue")
    await _notification(conn, B, created_ago=20, deadline_in=600, answered_after=None, state="pending")
    await conn.execute(
        """INSERT INTO dead_letters (consumer, topic, partition, "offset", value, reason)
           VALUES ('c', 'vital.birth.v1', 0, 7, '\\x00', 'invalid event: data.birth_order: too large')"""
    )
    picture = await ind.operations_picture(conn)
    n = picture["notifications"]
    assert (n["pending"], n["overdue"]) == (1, 1)
    assert 599 < n["oldest_open_seconds"] < 660 and 599 < n["oldest_overdue_seconds"] < 660
    assert picture["dead_letters"]["open"] == 1
    assert picture["dead_letters"]["latest"][0]["topic"] == "vital.birth.v1"
    assert picture["discrepancies"] == {"open": 0, "oldest": []}

    warnings = ind.alerts(
        {"operations": picture, "lag": [], "outbox": {"oldest_age_seconds": 0}}, ind.Thresholds()
    )
    assert [w["code"] for w in warnings] == ["overdue", "slow-feedback", "dlq"]
    assert warnings[0]["level"] == "alert" and "1 notifications overdue" in warnings[0]["text"]


async def test_open_notifications_are_read_through_their_index_whatever_the_statistics(
    conn: asyncpg.Connection,
) -> None:
    # Statistics taken while a backlog was open: every notification pending. Most are closed
    # since, and no vacuum has run: the planner, left alone, scans the whole table (or a bitmap
    # of the index entries of every closed one) at every sample of the operations picture.
    # Besides, 3,000 notifications went overdue long ago and were never answered: they stay.
    await conn.execute(
        """INSERT INTO notifications (id, target_division, source_division, subject, event_id, event_type,
                                      event_sequence, event_time, payload, deadline)
           SELECT gen_random_uuid(), $1, $2, 's' || i, gen_random_uuid(), 'migration.departed.v1', i,
                  now(), '{}'::jsonb, now() + interval '1 day'
           FROM generate_series(1, 3000) AS i""",
        B,
        A,
    )
    await conn.execute(
        """INSERT INTO notifications (id, target_division, source_division, subject, event_id, event_type,
                                      event_sequence, event_time, payload, state, deadline, created_at,
                                      overdue_at)
           SELECT gen_random_uuid(), $1, $2, 'o' || i, gen_random_uuid(), 'migration.departed.v1', i,
                  now(), NULL, 'overdue', now() - interval '300 days' + i * interval '1 minute',
                  now() - interval '307 days' + i * interval '1 minute',
                  now() - interval '300 days' + i * interval '1 minute'
           FROM generate_series(1, 3000) AS i""",
        B,
        A,
    )
    await conn.execute("ANALYZE notifications")
    await conn.execute(
        """UPDATE notifications SET state = 'applied', feedback_at = now()
           WHERE state = 'pending' AND event_sequence > 30"""
    )

    async with conn.transaction():
        picture = await ind.operations_picture(conn)
        # rows fetched through the table's indexes and read by sequential scans, in this transaction
        fetched, scanned = await conn.fetchrow(
            """SELECT sum(pg_stat_get_xact_tuples_fetched(indexrelid)),
                      pg_stat_get_xact_tuples_returned('notifications'::regclass)
               FROM pg_index WHERE indrelid = 'notifications'::regclass"""
        )

    n = picture["notifications"]
    assert (n["pending"], n["overdue"]) == (30, 3000)
    assert 307 * 86400 - 3600 < n["oldest_overdue_seconds"] == n["oldest_open_seconds"] < 307 * 86400
    assert (fetched, scanned) == (31, 0)  # the pending ones and the oldest overdue one, not every one


# What the operations picture counted before migration 0029: every open notification's row.
_OPEN_BY_ROWS = """SELECT count(*) FILTER (WHERE state = 'pending')::bigint AS pending,
                          count(*) FILTER (WHERE state = 'overdue')::bigint AS overdue,
                          coalesce(extract(epoch FROM now() - min(created_at)), 0)::float AS oldest_open_s,
                          coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'overdue')),
                                   0)::float AS oldest_overdue_s
                   FROM notifications WHERE state IN ('pending', 'overdue')"""


async def _summary_as_the_rows_say(conn: asyncpg.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    async with conn.transaction():  # one now() for both
        return dict(await stats.notification_summary(conn)), dict(await conn.fetchrow(_OPEN_BY_ROWS))


async def test_the_picture_counts_the_open_notifications_as_their_rows_do(
    conn: asyncpg.Connection, fresh_db: str
) -> None:
    """Overdue notifications are counted as they change state (migration 0029), not read one by
    one: whatever changes a state, and before the sweep folds the changes, the picture says what
    a count of the rows says."""

    async def same() -> dict[str, Any]:
        kept, rows = await _summary_as_the_rows_say(conn)
        assert kept == rows
        return kept

    assert (await same())["overdue"] == 0
    await _notification(conn, B, created_ago=900, deadline_in=60, answered_after=None, state="overdue")
    await _notification(conn, C, created_ago=600, deadline_in=60, answered_after=None, state="overdue")
    for target in (A, B, C):  # past their deadline, not swept yet
        await _notification(
            conn, target, created_ago=1200, deadline_in=30, answered_after=None, state="pending"
        )
    await _notification(conn, B, created_ago=10, deadline_in=600, answered_after=None, state="pending")
    assert (await same())["overdue"] == 2

    async with conn.transaction():  # the sweep: marked, then folded
        assert len(await repo.mark_overdue(conn)) == 3
        assert (await same())["overdue"] == 5
        await repo.fold_overdue_count(conn)
        assert (await same())["overdue"] == 5

    other = await asyncpg.connect(fresh_db)
    try:
        async with other.transaction():  # not committed yet: counted by neither
            await other.execute("UPDATE notifications SET state = 'overdue' WHERE state = 'pending'")
            assert (await same())["overdue"] == 5
        assert [(await same())[k] for k in ("pending", "overdue")] == [0, 6]
        # late answers close the three addressed to A and C (only the addressee can)
        late = await conn.fetch(
            "SELECT id, target_division FROM notifications WHERE target_division IN ($1, $2)", A, C
        )
        closed = await repo.close_notifications(
            conn, [(r["id"], r["target_division"], "applied", [], None) for r in late]
        )
        assert len(closed) == 3
        assert (await same())["overdue"] == 3
        # two sweeps fold at once, and a state set by hand back and forth
        await asyncio.gather(repo.fold_overdue_count(conn), repo.fold_overdue_count(other))
        await conn.execute(
            "UPDATE notifications SET state = 'pending' WHERE id = (SELECT min(id::text)::uuid FROM notifications WHERE state = 'overdue')"
        )
        assert (await same())["overdue"] == 2
        await repo.fold_overdue_count(other)
        await conn.execute("DELETE FROM notifications WHERE state = 'overdue' AND target_division = $1", B)
        assert [(await same())[k] for k in ("pending", "overdue")] == [1, 0]
    finally:
        await other.close()

    await conn.execute("TRUNCATE notifications CASCADE")
    assert (await same())["pending"] == 0
    await _notification(conn, B, created_ago=60, deadline_in=1, answered_after=None, state="overdue")
    assert (await same())["overdue"] == 1
    await repo.fold_overdue_count(conn)
    assert (await same())["overdue"] == 1
