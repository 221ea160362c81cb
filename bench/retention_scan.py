"""What one round of the exchange's notification purges reads, with and without the indexes that
hold only the rows left to purge (migration 0027).

``python -m bench.retention_scan [--rows 1000000] [--left 300] [--overdue 5000]`` starts an
embedded PostgreSQL, migrates an exchange database and fills it by ``generate_series``: ``--rows``
notifications answered ``applied`` over 90 days (their payloads purged when answered, as the
exchange does), ``--overdue`` never answered whose payloads the unanswered purge already emptied,
and ``--left`` of each kind still holding something (answered ``conflict`` or ``rejected`` with
the answer's values and reason; ``overdue`` with the payload), spread over the same 90 days, so
about two thirds are past the 30-day retention. Then each purge's statement (one batch of 5,000,
``adapters/retention.py``) runs as it did before 0027 and as it does now, each in a transaction
rolled back so both see the same rows: the median of ``--repeat`` timed runs, and one
``EXPLAIN (ANALYZE, BUFFERS)``: the plan's scans of ``notifications``, the rows they read, the
buffers the statement touched, and the index a generic plan (``plan_cache_mode =
force_generic_plan``, as a prepared statement may come to run) would scan. Not part of
``make bench``: a tool for whoever changes the purges; ``docs/scale.md`` has its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import plans
from bench.common import workdir, write_result
from devstack.embedded import EmbeddedPostgres
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import migrate

MIGRATIONS = Path(__file__).resolve().parent.parent / "services" / "migrant_exchange" / "migrations"
BATCH = 5000
NEW_INDEXES = ("notifications_purge_pending", "notifications_overdue_payload")

# The statements measured, as ``services/migrant_exchange/adapters/retention.py`` has them now
# (a benchmark does not import a service's adapters; ``tests/unit/test_bench_retention_scan.py``
# holds these to them) and as the unanswered purge was before 0027: its scan took
# ``notifications_open``, which keeps every overdue notification, its payload emptied or not. The
# answered purge's statement did not change: before 0027 it had no index to take. (Migration 0029
# dropped ``notifications_open``: the old statement now reads the same open notifications through
# ``notifications_state_created``.)
PAYLOADS = """WITH emptied AS (UPDATE notifications SET payload = NULL, reason = NULL, conflicts = coalesce((
                       SELECT jsonb_agg(jsonb_build_object('field', c->'field'))
                       FROM jsonb_array_elements(conflicts) c), conflicts)
                   WHERE id = ANY(ARRAY(
                       SELECT id FROM notifications WHERE feedback_at < $1 AND (payload IS NOT NULL
                           OR reason IS NOT NULL
                           OR jsonb_path_exists(conflicts, '$[*] ? (exists(@.ours) || exists(@.theirs))'))
                       LIMIT $2))
                   RETURNING 1)
               SELECT count(*) FROM emptied"""

UNANSWERED = """WITH emptied AS (UPDATE notifications SET payload = NULL
                     WHERE state IN ('pending', 'overdue') AND id = ANY(ARRAY(
                         SELECT id FROM notifications WHERE state = 'overdue' AND payload IS NOT NULL
                             AND created_at < $1 AND deadline < $1
                         UNION ALL
                         SELECT id FROM notifications WHERE state = 'pending' AND payload IS NOT NULL
                             AND created_at < $1 AND deadline < $1
                         LIMIT $2))
                     RETURNING 1)
                 SELECT count(*) FROM emptied"""

UNANSWERED_BEFORE = """WITH emptied AS (UPDATE notifications SET payload = NULL
                     WHERE state IN ('pending', 'overdue') AND id = ANY(ARRAY(
                         SELECT id FROM notifications WHERE state IN ('pending', 'overdue')
                             AND created_at < $1 AND deadline < $1 AND payload IS NOT NULL
                         LIMIT $2))
                     RETURNING 1)
                 SELECT count(*) FROM emptied"""

_NOTIFICATION = """INSERT INTO notifications (id, target_division, source_division, subject, event_id,
        event_type, event_sequence, event_time, payload, state, deadline, created_at, overdue_at,
        feedback_at, conflicts, reason, attempts)
    SELECT gen_random_uuid(), '440703', '320412', md5(i::text), gen_random_uuid(), 'birth.registered.v1', 1,
           t, {payload}, {state}, t + interval '7 days', t, {overdue_at}, {feedback_at}, {conflicts},
           {reason}, 1
    FROM generate_series(1, $1::int) i,
         LATERAL (SELECT now() - interval '90 days' * (1 - i::float8 / $1::int)) AS c(t)"""

KINDS = {  # what each kind of row holds: (payload, state, overdue_at, feedback_at, conflicts, reason)
    "applied": ("NULL", "'applied'", "NULL", "t + interval '1 hour'", "'[]'::jsonb", "NULL"),
    "overdue_emptied": ("NULL", "'overdue'", "t + interval '7 days'", "NULL", "NULL", "NULL"),
    "answered_left": (
        """'{"name": "李娜", "id_number": "110101199003070022"}'::jsonb""",
        "CASE WHEN i % 2 = 0 THEN 'conflict' ELSE 'rejected' END",
        "NULL",
        "t + interval '1 hour'",
        """'[{"field": "name", "ours": "李娜", "theirs": "李那"}]'::jsonb""",
        "'not registered here'",
    ),
    "overdue_left": (
        """'{"name": "李娜"}'::jsonb""",
        "'overdue'",
        "t + interval '7 days'",
        "NULL",
        "NULL",
        "NULL",
    ),
}


async def fill(dsn: str, rows: int, left: int, overdue: int) -> dict[str, float]:
    """The notifications, in the order they were created (the table's pages follow time); seconds
    per step."""
    took = {}
    conn = await asyncpg.connect(dsn)
    try:
        for kind, n in (
            ("applied", rows),
            ("overdue_emptied", overdue),
            ("answered_left", left),
            ("overdue_left", left),
        ):
            payload, state, overdue_at, feedback_at, conflicts, reason = KINDS[kind]
            sql = _NOTIFICATION.format(
                payload=payload,
                state=state,
                overdue_at=overdue_at,
                feedback_at=feedback_at,
                conflicts=conflicts,
                reason=reason,
            )
            start = time.perf_counter()
            await conn.execute(sql, n)
            took[kind] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) notifications")  # autovacuum's part, done at once
        took["vacuum_analyze"] = round(time.perf_counter() - start, 1)
    finally:
        await conn.close()
    return took


def _purged(rows: list[asyncpg.Record]) -> Any:
    """How many rows a purge's batch emptied (its statement's one value)."""
    return rows[0][0]


async def measure(
    conn: asyncpg.Connection, sql: str, cutoff: dt.datetime, before: bool, repeat: int
) -> dict[str, Any]:
    """``bench.plans.measure`` of a purge's batch, on the schema before 0027 (its indexes dropped,
    in the same rolled-back transaction) or now."""
    prelude = [f"DROP INDEX IF EXISTS {index}" for index in NEW_INDEXES] if before else []
    return await plans.measure(conn, prelude, sql, (cutoff, BATCH), repeat, _purged)


async def compare(dsn: str, repeat: int) -> dict[str, Any]:
    settings = ExchangeSettings()
    now = dt.datetime.now(dt.UTC)
    cases = {  # name: (retention in days, the statement before 0027, the statement now)
        "notification_payloads": (settings.retention_notification_payload_days, PAYLOADS, PAYLOADS),
        "unanswered_payloads": (settings.retention_unanswered_payload_days, UNANSWERED_BEFORE, UNANSWERED),
    }
    conn = await asyncpg.connect(dsn)
    try:
        out = {}
        for name, (days, before_sql, after_sql) in cases.items():
            cutoff = now - dt.timedelta(days=days)
            out[name] = {
                "before": await measure(conn, before_sql, cutoff, True, repeat),
                "after": await measure(conn, after_sql, cutoff, False, repeat),
            }
        return out
    finally:
        await conn.close()


def run(rows: int, left: int, overdue: int, repeat: int) -> dict[str, Any]:
    root = workdir("mx-bench-retention-")
    pg = EmbeddedPostgres(root / "pgdata", cleanup="delete")
    try:
        dsn = pg.create_database("bench_retention")
        asyncio.run(migrate(dsn, "migrant_exchange", MIGRATIONS))
        took = asyncio.run(fill(dsn, rows, left, overdue))
        result = asyncio.run(compare(dsn, repeat))
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {"rows": rows, "left": left, "overdue": overdue, "fill_seconds": took, "purges": result}


def _line(name: str, when: str, m: dict[str, Any]) -> str:
    # Left out: the update's look-up of the chosen ids by primary key, the same both ways (its
    # figures include the scan, which the plan hangs under it).
    scans = "; ".join(
        f"{s['scan']} {s['index'] or ''}: {s['rows_read']:,} rows, {s['buffers']:,} buffers, {s['ms']} ms"
        for s in m["scans"]
        if s["index"] != "notifications_pkey"
    )
    return (
        f"{name:22} {when:6} {m['ms_median']:9.1f} ms  purged {m['returned']}  "
        f"buffers {m['buffers_hit'] + m['buffers_read']:,} ({m['buffers_read']:,} read)  {scans}  "
        f"generic plan: {', '.join(m['generic_plan_scans'])}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="applied notifications, payloads purged")
    parser.add_argument("--left", type=int, default=300, help="of each kind, notifications still to purge")
    parser.add_argument("--overdue", type=int, default=5_000, help="overdue notifications, payloads purged")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each statement")
    args = parser.parse_args()
    out = run(args.rows, args.left, args.overdue, args.repeat)
    write_result("retention_scan", out)
    print(f"filled in {out['fill_seconds']} s")
    for name, sides in out["purges"].items():
        for when, m in sides.items():
            print(_line(name, when, m))
    same = all(sides["before"]["returned"] == sides["after"]["returned"] for sides in out["purges"].values())
    print("the same rows purged before and after:", same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
