"""What the exchange's statements over open notifications read when overdue ones pile up, before
and after migration 0029 (``notifications_open`` dropped, the overdue counted as they change state).

``python -m bench.open_notifications [--rows 1000000] [--overdue 200000] [--pending 6000]`` starts
an embedded PostgreSQL, migrates an exchange database up to 0028 and fills it by
``generate_series``: ``--rows`` notifications answered ``applied`` over 90 days (payloads purged),
``--overdue`` never answered, spread over the same 90 days (their payloads emptied by the
unanswered purge), and ``--pending`` created in the last hour, of which ``--due`` are past their
deadline and not swept yet. ``VACUUM ANALYZE``, then each statement runs on that schema, then
0029 is applied (timed: it counts the overdue ones once), ``VACUUM ANALYZE`` again, and each
statement runs again: the median of ``--repeat`` timed runs, each in a transaction rolled back so
every run sees the same rows, and one ``EXPLAIN (ANALYZE, BUFFERS)``: its scans of
``notifications``, the rows they read and the buffers. The statements: the operations picture's
summary (sampled every second), the sweep's marking (which now fires the count's trigger) and its
fold, 500 answers to pending notifications (the pipeline's path: the trigger's condition is
tested and nothing fires), late answers to overdue ones, the re-send query, and, for comparison,
what a count of the overdue by an index-only scan would read. Not part of ``make bench``;
``docs/scale.md`` has its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench import plans
from bench.common import workdir, write_result
from devstack.embedded import EmbeddedPostgres
from shared.db import migrate

MIGRATIONS = Path(__file__).resolve().parent.parent / "services" / "migrant_exchange" / "migrations"
THE_MIGRATION = "0029_overdue_count.sql"
ANSWERS = 500  # a batch of answers: at most a consumer batch (outbox_batch_size)
OPEN_BY_INDEX = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"

# As ``services/migrant_exchange/adapters`` has them (a benchmark does not import a service's
# adapters; ``tests/unit/test_bench_open_notifications.py`` holds these to them). The summary's
# statement before 0029 read every open notification's row through ``notifications_open``.
SUMMARY_BEFORE = """SELECT count(*) FILTER (WHERE state = 'pending')::bigint AS pending,
                      count(*) FILTER (WHERE state = 'overdue')::bigint AS overdue,
                      coalesce(extract(epoch FROM now() - min(created_at)), 0)::float AS oldest_open_s,
                      coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'overdue')),
                               0)::float AS oldest_overdue_s
               FROM notifications WHERE state IN ('pending', 'overdue')"""

SUMMARY = """SELECT p.n AS pending,
           (coalesce((SELECT n FROM notifications_overdue_count), 0)
            + (SELECT coalesce(sum(delta), 0) FROM notifications_overdue_changes))::bigint AS overdue,
           coalesce(extract(epoch FROM now() - least(p.oldest, o.oldest)), 0)::float AS oldest_open_s,
           coalesce(extract(epoch FROM now() - o.oldest), 0)::float AS oldest_overdue_s
    FROM (SELECT count(*)::bigint, min(created_at) FROM notifications WHERE state = 'pending') AS p(n, oldest),
         (SELECT min(created_at) FROM notifications WHERE state = 'overdue') AS o(oldest)"""

MARK_OVERDUE = """UPDATE notifications SET state = 'overdue', overdue_at = now(), next_attempt_at = NULL
           WHERE state = 'pending' AND deadline < now()
           RETURNING id, target_division, source_division, event_type"""

FOLD_OVERDUE_COUNT = """WITH folded AS (DELETE FROM notifications_overdue_changes RETURNING delta)
    UPDATE notifications_overdue_count SET n = n + f.s
    FROM (SELECT sum(delta) AS s FROM folded) AS f WHERE f.s IS NOT NULL"""

CLOSE = """UPDATE notifications n SET state = u.outcome, feedback_at = now(), conflicts = u.conflicts::jsonb,
                                      reason = u.reason, next_attempt_at = NULL,
                                      payload = CASE WHEN u.outcome = 'applied' THEN NULL ELSE n.payload END
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                AS u(id, from_division, outcome, conflicts, reason)
           WHERE n.id = u.id AND n.target_division = u.from_division AND n.state IN ('pending', 'overdue')
           RETURNING n.id"""

DUE_FOR_RESEND = """SELECT * FROM notifications
           WHERE state = 'pending' AND next_attempt_at <= now() AND attempts < $1 AND deadline > now()
           ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED"""

OVERDUE_BY_INDEX_ONLY = "SELECT count(*) FROM notifications WHERE state = 'overdue'"

_NOTIFICATION = """INSERT INTO notifications (id, target_division, source_division, subject, event_id,
        event_type, event_sequence, event_time, payload, state, deadline, created_at, overdue_at,
        feedback_at, conflicts, next_attempt_at)
    SELECT gen_random_uuid(), '440703', '320412', md5(i::text), gen_random_uuid(), 'birth.registered.v1', 1,
           t, {payload}, {state}, {deadline}, t, {overdue_at}, {feedback_at}, {conflicts}, {next_attempt_at}
    FROM generate_series(1, $1::int) i,
         LATERAL (SELECT now() - {span} * (1 - i::float8 / $1::int)) AS c(t)"""

KINDS = {  # (payload, state, deadline, overdue_at, feedback_at, conflicts, next_attempt_at, span)
    "applied": (
        "NULL",
        "'applied'",
        "t + interval '7 days'",
        "NULL",
        "t + interval '1 hour'",
        "'[]'::jsonb",
        "NULL",
        "interval '90 days'",
    ),
    "overdue": (
        "NULL",
        "'overdue'",
        "t + interval '7 days'",
        "t + interval '7 days'",
        "NULL",
        "NULL",
        "NULL",
        "interval '90 days'",
    ),
    "pending": (
        """'{"name": "李娜"}'::jsonb""",
        "'pending'",
        "t + interval '7 days'",
        "NULL",
        "NULL",
        "NULL",
        "now() - interval '1 minute'",
        "interval '1 hour'",
    ),
    "due": (  # past the deadline, not swept yet
        """'{"name": "李娜"}'::jsonb""",
        "'pending'",
        "t - interval '1 minute'",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "interval '1 hour'",
    ),
}


async def fill(dsn: str, counts: dict[str, int]) -> dict[str, float]:
    took = {}
    conn = await asyncpg.connect(dsn)
    try:
        for kind in ("applied", "overdue", "pending", "due"):
            payload, state, deadline, overdue_at, feedback_at, conflicts, next_at, span = KINDS[kind]
            sql = _NOTIFICATION.format(
                payload=payload,
                state=state,
                deadline=deadline,
                overdue_at=overdue_at,
                feedback_at=feedback_at,
                conflicts=conflicts,
                next_attempt_at=next_at,
                span=span,
            )
            start = time.perf_counter()
            await conn.execute(sql, counts[kind])
            took[kind] = round(time.perf_counter() - start, 1)
    finally:
        await conn.close()
    return took


async def _vacuum(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE) notifications")  # autovacuum's part, done at once
    finally:
        await conn.close()


def _outcome(rows: list[asyncpg.Record]) -> Any:
    """What a statement returned, to compare before and after: the rows, or how many (ages apart:
    each run has its own now())."""
    if len(rows) == 1 and "pending" in rows[0]:
        return {k: rows[0][k] for k in ("pending", "overdue")} | {
            k: round(rows[0][k] / 60)
            for k in ("oldest_open_s", "oldest_overdue_s")  # in minutes
        }
    if len(rows) == 1 and len(rows[0]) == 1:
        return rows[0][0]
    return len(rows)


async def measure(
    conn: asyncpg.Connection, prelude: list[str], sql: str, args: tuple[Any, ...], repeat: int
) -> dict[str, Any]:
    return await plans.measure(conn, prelude, sql, args, repeat, _outcome)


async def _cases(dsn: str, after: bool) -> dict[str, tuple[list[str], str, tuple[Any, ...]]]:
    """name: (statements run first in the same transaction, untimed; the statement; its arguments)."""
    conn = await asyncpg.connect(dsn)
    try:
        pending = await conn.fetch(
            "SELECT id, target_division FROM notifications WHERE state = 'pending' AND deadline > now() LIMIT $1",
            ANSWERS,
        )
        late = await conn.fetch(
            "SELECT id, target_division FROM notifications WHERE state = 'overdue' ORDER BY created_at LIMIT 500"
        )
    finally:
        await conn.close()

    def answers(rows: list[asyncpg.Record]) -> tuple[Any, ...]:
        return (
            [r["id"] for r in rows],
            [r["target_division"] for r in rows],
            ["applied"] * len(rows),
            ["[]"] * len(rows),
            [None] * len(rows),
        )

    cases = {
        "summary": ([OPEN_BY_INDEX], SUMMARY if after else SUMMARY_BEFORE, ()),
        "mark_overdue": ([], MARK_OVERDUE, ()),
        "answers_to_pending": ([], CLOSE, answers(pending)),
        "late_answers": ([], CLOSE, answers(late)),
        "due_for_resend": ([], DUE_FOR_RESEND, (8, 500)),
    }
    if after:
        cases["fold_after_mark"] = ([MARK_OVERDUE], FOLD_OVERDUE_COUNT, ())
        cases["summary_after_mark"] = ([MARK_OVERDUE, OPEN_BY_INDEX], SUMMARY, ())
        cases["overdue_by_index_only"] = ([OPEN_BY_INDEX], OVERDUE_BY_INDEX_ONLY, ())
    else:
        cases["summary_after_mark"] = ([MARK_OVERDUE, OPEN_BY_INDEX], SUMMARY_BEFORE, ())
    return cases


async def compare(dsn: str, after: bool, repeat: int) -> dict[str, Any]:
    cases = await _cases(dsn, after)
    conn = await asyncpg.connect(dsn)
    try:
        return {name: await measure(conn, *case, repeat) for name, case in cases.items()}
    finally:
        await conn.close()


def run(counts: dict[str, int], repeat: int) -> dict[str, Any]:
    root = workdir("mx-bench-open-")
    pg = EmbeddedPostgres(root / "pgdata", cleanup="delete")
    before_0029 = Path(tempfile.mkdtemp(prefix="mx-migrations-"))
    try:
        for f in MIGRATIONS.glob("*.sql"):
            if f.name != THE_MIGRATION:
                shutil.copy(f, before_0029 / f.name)
        dsn = pg.create_database("bench_open")
        asyncio.run(migrate(dsn, "migrant_exchange", before_0029))
        took = asyncio.run(fill(dsn, counts))
        asyncio.run(_vacuum(dsn))
        before = asyncio.run(compare(dsn, False, repeat))
        start = time.perf_counter()
        asyncio.run(migrate(dsn, "migrant_exchange", MIGRATIONS))
        took["migration_0029"] = round(time.perf_counter() - start, 2)
        asyncio.run(_vacuum(dsn))
        after = asyncio.run(compare(dsn, True, repeat))
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(before_0029, ignore_errors=True)
    return {**counts, "seconds": took, "before": before, "after": after}


def _line(name: str, when: str, m: dict[str, Any]) -> str:
    scans = "; ".join(
        f"{s['scan']} {s['index'] or ''}: {s['rows_read']:,} rows, {s['buffers']:,} buffers"
        for s in m["scans"]
        if s["index"] != "notifications_pkey"
    )
    return (
        f"{name:22} {when:6} {m['ms_median']:9.2f} ms  buffers {m['buffers_hit'] + m['buffers_read']:,} "
        f"({m['buffers_read']:,} read)  triggers {m['trigger_ms']} ms  returned {m['returned']}\n"
        f"{'':29} {scans}  generic plan: {', '.join(m['generic_plan_scans'])}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="applied notifications")
    parser.add_argument("--overdue", type=int, default=200_000, help="overdue notifications, never answered")
    parser.add_argument(
        "--pending", type=int, default=6_000, help="pending notifications, within their deadline"
    )
    parser.add_argument("--due", type=int, default=500, help="pending notifications past their deadline")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each statement")
    args = parser.parse_args()
    counts = {"applied": args.rows, "overdue": args.overdue, "pending": args.pending, "due": args.due}
    out = run(counts, args.repeat)
    write_result("open_notifications", out)
    print(f"seconds: {out['seconds']}")
    for name in out["after"]:
        for when in ("before", "after"):
            if name in out[when]:
                print(_line(name, when, out[when][name]))
    same = all(
        out["before"][name]["returned"] == out["after"][name]["returned"]
        for name in out["before"]
        if name in out["after"]
    )
    print("the same results before and after:", same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
