"""Backlog catch-up: the broker (or the exchange) is down while N events pile up, then comes back.

A province offline for a day comes back with ~1.7 M events; this measures how fast the pipeline
drains such a backlog. On a fresh stack, after a warm-up that goes end to end, the broker is
stopped (Tansu is memory-only: it comes back empty and the services re-create its topics and
re-send their recent outbox, as ``tests/reliability`` shows), N ``migration.departed.v1`` events
are written into the origin registry's outbox (COPY, as a bulk import writes them), and the
broker is started again. With ``--stop exchange`` the exchange process is stopped instead: the
relay publishes the whole backlog into the broker and the exchange reads it when it returns.

Measured from the restart: the time until every notification is applied at the destination and
closed by its feedback, each stage's drain rate from the timestamps the stage writes (origin
outbox ``published_at``, exchange ``inbox.applied_at``, ``notifications.created_at``, destination
``migrations.created_at``, ``notifications.feedback_at``), the CPU seconds of every process per
event, PostgreSQL's own count of the statements per event with their rows, time and WAL
(``bench.statements``), and per stage that nothing was lost or doubled. Target (issue 18):
>= 5,000 events/s, 0 lost, 0 applied twice.

    python -m bench.backlog [--events 50000] [--stop broker|exchange] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import statements
from bench.common import FEEDBACK_ANSWERS, departure, workdir, write_result
from devstack.embedded import EmbeddedPostgres
from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.db import init_connection
from shared.identity import compose_id_number, subject_key
from shared.outbox import add_events, make_event, next_sequences, wake_relay

TARGET_EVENTS_PER_S = 5000
SOURCE = f"/registry/{ORIGIN}"


def people(n: int, first: int = 0) -> list[str]:
    """``n`` distinct identity numbers, 500 per birth date, numbered from ``first`` (the warm-up
    and the backlog take disjoint ranges)."""
    born = dt.date(1960, 1, 1)
    return [
        compose_id_number("110101", born + dt.timedelta(days=i // 500), i % 500, "F")
        for i in range(first, first + n)
    ]


async def write_backlog(stack: Stack, numbers: list[str], batch: int = 5000) -> list[uuid.UUID]:
    """One ``migration.departed.v1`` per person into the origin registry's outbox, ``batch`` per
    transaction with one sequence statement and one COPY: the writer must not be what is measured."""
    secret = stack.subject_secret.encode()
    conn = await asyncpg.connect(stack.service(f"registry-{ORIGIN}").dsn)
    await init_connection(conn)
    ids: list[uuid.UUID] = []
    try:
        for start in range(0, len(numbers), batch):
            chunk = {subject_key(n, secret): n for n in numbers[start : start + batch]}
            async with conn.transaction():
                sequences = await next_sequences(conn, list(chunk), SOURCE)
                events = [
                    _departure(subject, number, sequences[subject]) for subject, number in chunk.items()
                ]
                await add_events(conn, events)
            ids += [e.id for e in events]
            await wake_relay(conn)
    finally:
        await conn.close()
    return ids


def _departure(subject: str, number: str, sequence: int) -> Any:
    return make_event(
        event_type="migration.departed.v1",
        source=SOURCE,
        subject=subject,
        sequence=sequence,
        data=departure(number, dt.date(2025, 3, 1)),
        origin=ORIGIN,
        destination=DESTINATION,
    )


# --- watching the drain -------------------------------------------------------------------------


@dataclass
class Drain:
    drained: bool
    timeline: list[dict[str, Any]]
    poll_cpu_s: float  # what the polls cost PostgreSQL: taken out of its CPU per event


async def wait_drained(stack: Stack, expected: int, timeout: float, already: int = 0) -> Drain:
    """Poll until ``expected`` more notifications than ``already`` are closed (or the timeout).

    Each second the exchange's open notifications are counted (a plain scan of their partial
    index: what is in flight, not the whole table); every closed one is counted, a scan of the
    whole table, only when nothing is open and every fifth second, with the origin's unpublished
    rows and the exchange's pending notifications for the timeline, which shows the stage the
    backlog waits in. The CPU the polls' two backends used is returned, so that the benchmark's
    own counting is not charged to PostgreSQL's work per event (a whole-table count each second,
    as this poll made until 2026-12-05, took seconds of it in a 200,000-event drain)."""
    origin = await asyncpg.connect(stack.service(f"registry-{ORIGIN}").dsn)
    exchange = await asyncpg.connect(
        stack.service("migrant_exchange").dsn,
        server_settings={"enable_seqscan": "off", "enable_bitmapscan": "off"},
    )
    backends = [psutil.Process(await c.fetchval("SELECT pg_backend_pid()")) for c in (origin, exchange)]
    started = time.monotonic()
    timeline: list[dict[str, Any]] = []
    polls = 0
    try:
        while time.monotonic() - started < timeout:
            open_now = await exchange.fetchval(
                "SELECT count(*) FROM notifications WHERE state IN ('pending', 'overdue')"
            )
            polls += 1
            if open_now == 0 or polls % 5 == 1:
                states = dict(
                    await exchange.fetch("SELECT state, count(*) FROM notifications GROUP BY state")
                )
                closed = states.get("applied", 0) - already
                if polls % 5 == 1 or closed >= expected:
                    unpublished = await origin.fetchval(
                        "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                    )
                    timeline.append(
                        {
                            "s": round(time.monotonic() - started, 1),
                            "origin_unpublished": unpublished,
                            "pending": states.get("pending", 0),
                            "closed": closed,
                        }
                    )
                if closed >= expected:
                    return Drain(True, timeline, sum(_cpu(b) for b in backends))
            await asyncio.sleep(1.0)
        return Drain(False, timeline, sum(_cpu(b) for b in backends))
    finally:
        await origin.close()
        await exchange.close()


# --- counting every stage ----------------------------------------------------------------------


async def stage_counts(stack: Stack, numbers: list[str], ids: list[uuid.UUID]) -> dict[str, Any]:
    """Each stage for this backlog only, joined against the id arrays (hash joins, not one
    ``= ANY`` probe per row), with each stage's first and last timestamp."""
    secret = stack.subject_secret.encode()
    subjects = [subject_key(n, secret) for n in numbers]
    origin = await asyncpg.connect(stack.service(f"registry-{ORIGIN}").dsn)
    exchange = await asyncpg.connect(stack.service("migrant_exchange").dsn)
    dest = await asyncpg.connect(stack.service(f"registry-{DESTINATION}").dsn)
    try:
        published = await origin.fetchrow(
            """SELECT count(*) FILTER (WHERE published_at IS NOT NULL) AS n,
                      min(published_at) AS first, max(published_at) AS last
               FROM outbox o JOIN unnest($1::uuid[]) AS t(id) ON o.event_id = t.id""",
            ids,
        )
        applied = await exchange.fetchrow(
            """SELECT count(DISTINCT i.event_id) AS n, min(applied_at) AS first, max(applied_at) AS last
               FROM inbox i JOIN unnest($1::uuid[]) AS t(id) ON i.event_id = t.id""",
            ids,
        )
        moves = await exchange.fetchval(
            """SELECT coalesce(sum(moves), 0)
               FROM roster r JOIN unnest($1::text[]) AS t(s) ON r.subject = t.s""",
            subjects,
        )
        notes = await exchange.fetchrow(
            """SELECT count(*) AS n, count(DISTINCT event_id) AS events,
                      count(*) FILTER (WHERE state = 'applied') AS closed,
                      coalesce(sum(attempts), 0) AS attempts,
                      min(created_at) AS first, max(created_at) AS last,
                      min(feedback_at) AS first_closed, max(feedback_at) AS last_closed
               FROM notifications n JOIN unnest($1::uuid[]) AS t(id) ON n.event_id = t.id""",
            ids,
        )
        note_ids = [
            str(r["id"])
            for r in await exchange.fetch(
                "SELECT n.id FROM notifications n JOIN unnest($1::uuid[]) AS t(id) ON n.event_id = t.id",
                ids,
            )
        ]
        at_dest = await dest.fetchrow(
            """SELECT count(*) AS n, count(DISTINCT id_number) AS people,
                      min(created_at) AS first, max(created_at) AS last
               FROM migrations m JOIN unnest($1::text[]) AS t(n) ON m.id_number = t.n""",
            numbers,
        )
        answers = await dest.fetchval(
            f"""SELECT count(*) FROM ({FEEDBACK_ANSWERS}) AS f
                JOIN unnest($1::text[]) AS t(id) ON f.notification_id = t.id""",
            note_ids,
        )
    finally:
        for conn in (origin, exchange, dest):
            await conn.close()
    return {
        # each stage: (events through it, first timestamp, last timestamp)
        "stages": {
            "published_by_relay": (published["n"], published["first"], published["last"]),
            "applied_by_exchange": (applied["n"], applied["first"], applied["last"]),
            "notifications_routed": (notes["n"], notes["first"], notes["last"]),
            "applied_at_destination": (at_dest["people"], at_dest["first"], at_dest["last"]),
            "closed_by_feedback": (notes["closed"], notes["first_closed"], notes["last_closed"]),
        },
        "roster_moves": int(moves),
        "notifications": int(notes["n"]),
        "closed": int(notes["closed"]),
        "destination_rows": int(at_dest["n"]),
        "destination_people": int(at_dest["people"]),
        # Feedback the destination queued beyond one per delivery attempt: a notification applied again.
        "feedback_repeated": max(0, answers - int(notes["attempts"])),
    }


def stages(raw: dict[str, tuple[int, Any, Any]], restarted: dt.datetime) -> dict[str, dict[str, Any]]:
    """Per stage: how many, when the first and the last landed (seconds after the restart), and
    its drain rate counted from the restart (the rate the backlog left that stage at)."""
    out = {}
    for name, (n, first, last) in raw.items():
        last_s = (last - restarted).total_seconds() if last else None
        out[name] = {
            "count": n,
            "first_s": round((first - restarted).total_seconds(), 2) if first else None,
            "last_s": round(last_s, 2) if last_s is not None else None,
            "events_per_s": round(n / last_s) if last_s and last_s > 0 else None,
        }
    return out


# --- CPU ---------------------------------------------------------------------------------------


def _cpu(proc: psutil.Process) -> float:
    """User + system seconds of a process and its children, live ones and those it has reaped
    (PostgreSQL's backends come and go under the postmaster)."""
    try:
        t = proc.cpu_times()
        total = float(t.user + t.system + t.children_user + t.children_system)
        for child in proc.children(recursive=True):
            c = child.cpu_times()
            total += c.user + c.system
        return total
    except psutil.Error:
        return 0.0


def processes(stack: Stack, pg: EmbeddedPostgres) -> dict[str, psutil.Process]:
    """Every process that works on the backlog: the services, the broker, PostgreSQL."""
    procs = {s.log_name: psutil.Process(s.process.pid) for s in stack.services if s.process}
    if stack.broker is not None and stack.broker.process is not None:
        procs["broker"] = psutil.Process(stack.broker.process.pid)
    postmaster = int((Path(pg.server.pgdata) / "postmaster.pid").read_text().split()[0])
    procs["postgresql"] = psutil.Process(postmaster)
    return procs


# --- the run -----------------------------------------------------------------------------------


def _stop(stack: Stack, what: str) -> None:
    if what == "broker":
        assert stack.broker is not None
        stack.broker.stop()
    else:
        stack.stop_service(stack.service("migrant_exchange"))


def _start(stack: Stack, what: str) -> None:
    if what == "broker":
        assert stack.broker is not None
        stack.broker.start()
    else:
        stack.spawn(stack.service("migrant_exchange"))


async def _until_published(stack: Stack, timeout: float) -> float:
    """With the exchange down the relay still publishes: wait until the backlog is all in the broker."""
    conn = await asyncpg.connect(stack.service(f"registry-{ORIGIN}").dsn)
    started = time.monotonic()
    try:
        while await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
            if time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.5)
        return time.monotonic() - started
    finally:
        await conn.close()


def catch_up(stack: Stack, pg: EmbeddedPostgres, events: int, stop: str, timeout: float) -> dict[str, Any]:
    """Warm up end to end, stop ``stop``, write the backlog, start it again and wait for the drain."""
    warm = people(200, first=events)
    asyncio.run(write_backlog(stack, warm))
    assert asyncio.run(wait_drained(stack, len(warm), 120)).drained, "the warm-up never went end to end"
    result: dict[str, Any] = {"events": events, "stopped": stop}

    _stop(stack, stop)
    backlog = people(events)
    started = time.monotonic()
    ids = asyncio.run(write_backlog(stack, backlog))
    result["write_seconds"] = round(time.monotonic() - started, 1)
    if stop == "exchange":
        result["published_while_down_s"] = round(asyncio.run(_until_published(stack, timeout)), 1)

    asyncio.run(statements.reset(pg.admin_dsn))
    _start(stack, stop)
    restarted = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    procs = processes(stack, pg)
    cpu_before = {name: _cpu(proc) for name, proc in procs.items()}
    load_before = os.getloadavg()
    drain = asyncio.run(wait_drained(stack, events, timeout, already=len(warm)))
    drained, timeline = drain.drained, drain.timeline
    took = time.monotonic() - started
    cpu = {name: _cpu(proc) - cpu_before[name] for name, proc in procs.items()}
    cpu["postgresql"] -= drain.poll_cpu_s
    postgresql = asyncio.run(statements.per_event(pg.admin_dsn, events))

    counts = asyncio.run(stage_counts(stack, backlog, ids))
    closed = counts["closed"]
    # Per event that went all the way through: after a timeout, N would understate the cost.
    per = max(closed, 1) / 1000
    missing = events - counts["destination_people"]
    result |= {
        "drained": drained,
        "restart_to_all_closed_s": round(took, 1) if drained else None,
        "events_per_second_end_to_end": round(closed / took),
        "stages": stages(counts["stages"], restarted),
        # Lost only once the drain is over; after a timeout the rest was still on its way.
        "lost": missing if drained else None,
        "not_applied_at_timeout": None if drained else missing,
        "applied_twice_at_destination": counts["destination_rows"] - counts["destination_people"],
        "feedback_repeated": counts["feedback_repeated"],
        "roster_moves": counts["roster_moves"],
        "notifications_per_event": counts["notifications"] / events,
        "cpu_seconds": {name: round(s, 1) for name, s in cpu.items()},
        "poll_cpu_seconds": round(drain.poll_cpu_s, 2),  # taken out of PostgreSQL's
        "cpu_ms_per_event": {name: round(s / per, 3) for name, s in cpu.items()},
        "cpu_ms_per_event_all": round(sum(cpu.values()) / per, 3),
        "postgresql_per_event": postgresql,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "timeline": timeline,
    }
    return result


def run(events: int, stop: str = "broker", timeout: float = 1800) -> dict[str, Any]:
    root = workdir("mx-bench-backlog-")
    pg = EmbeddedPostgres(root / "pgdata", cleanup="delete", statement_statistics=True)
    stack = Stack(root / "stack", pg=pg, db_prefix="bench_", extra_env={"LOG_LEVEL": "WARNING"})
    try:
        stack.start()
        return catch_up(stack, pg, events, stop, timeout)
    finally:
        stack.stop()
        pg.stop()


def flowing(stage: dict[str, Any]) -> tuple[float, int] | None:
    """When a stage's first event landed after the restart, and its rate from then to its last."""
    first, last = stage["first_s"], stage["last_s"]
    if first is None or last is None or last <= first:
        return None
    return first, round(stage["count"] / (last - first))


def rows_for_report(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows bench/report.py shows: the drain rate against the target, each stage, losses."""
    n, rate = r["events"], r["events_per_second_end_to_end"]
    rows: list[dict[str, Any]] = [
        {
            "metric": f"drain {n:,} events after the {r['stopped']} restarts (end to end)",
            "value": rate,
            "unit": "ev/s",
            "target": f">= {TARGET_EVENTS_PER_S:,} ev/s",
            "met": bool(r["drained"]) and rate >= TARGET_EVENTS_PER_S,
        },
        {
            "metric": "restart until every notification applied and closed",
            "value": r["restart_to_all_closed_s"],
            "unit": "s",
        },
    ]
    # The end-to-end rate above counts from the restart, so it includes the time the consumer
    # groups take to form again; these two rows split it into that wait and the drain itself.
    if (flow := flowing(r["stages"]["applied_at_destination"])) is not None:
        rows += [
            {
                "metric": "restart until the first event applied at the destination",
                "value": flow[0],
                "unit": "s",
            },
            {
                "metric": "drain once flowing (first to last applied at the destination)",
                "value": flow[1],
                "unit": "ev/s",
            },
        ]
    rows += [
        {"metric": f"stage {name.replace('_', ' ')}", "value": s["events_per_s"], "unit": "ev/s"}
        for name, s in r["stages"].items()
    ]
    rows += [
        {
            "metric": "lost" if r["drained"] else "lost (drain timed out: not measured)",
            "value": r["lost"],
            "unit": "events",
            "target": "= 0",
            "met": r["lost"] == 0 if r["drained"] else None,
        },
        {
            "metric": "applied twice (destination rows, repeated feedback)",
            "value": r["applied_twice_at_destination"] + r["feedback_repeated"],
            "unit": "events",
            "target": "= 0",
            "met": r["applied_twice_at_destination"] + r["feedback_repeated"] == 0,
        },
        {"metric": "CPU per event, all processes", "value": r["cpu_ms_per_event_all"], "unit": "ms"},
    ]
    pg = r["postgresql_per_event"]["per_event"]["all"]
    rows += [
        {"metric": "PostgreSQL statements per event, all databases", "value": pg["statements"], "unit": ""},
        {"metric": "PostgreSQL execution per event, all databases", "value": pg["exec_us"], "unit": "us"},
        {"metric": "PostgreSQL WAL per event, all databases", "value": pg["wal_bytes"], "unit": "bytes"},
        {
            "metric": "PostgreSQL WAL full pages per event, all databases",
            "value": pg["wal_full_pages"],
            "unit": "",
        },
    ]
    return rows


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="backlog size (issue 18 names 200,000)")
    parser.add_argument("--stop", choices=("broker", "exchange"), default="broker")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the drain")
    args, _ = parser.parse_known_args()
    result = run(args.events, args.stop, args.timeout)
    report = rows_for_report(result)
    print(json.dumps({**result, "timeline": result["timeline"][-3:]}, indent=2, default=str))
    print(statements.markdown(result["postgresql_per_event"]))
    write_result("backlog", {**result, "rows": report})
    return result


if __name__ == "__main__":
    main()
