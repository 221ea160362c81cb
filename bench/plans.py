"""Timing a statement against a filled exchange database, and reading its plan, for the benchmarks
of the exchange's statements over ``notifications`` (``bench.retention_scan``,
``bench.open_notifications``).

Each run is a transaction rolled back, so every run, timed or explained, sees the same rows; the
statements of a ``prelude`` run first in it, untimed (an index dropped to see the statement as it
was before a migration, a sweep's marking before the fold that follows it).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg


def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's scans of ``notifications`` and its indexes: which way, and the rows (or index
    entries) each read, kept or filtered out."""
    found = []
    if "Scan" in node["Node Type"] and (
        node.get("Relation Name") == "notifications"
        or str(node.get("Index Name", "")).startswith("notifications")
    ):
        kept = int(node.get("Actual Rows", 0))
        removed = sum(
            int(node.get(k, 0)) for k in ("Rows Removed by Filter", "Rows Removed by Index Recheck")
        )
        loops = int(node.get("Actual Loops", 1))
        found.append(
            {
                "scan": node["Node Type"],
                "index": node.get("Index Name"),
                "rows_read": (kept + removed) * loops,
                "rows_kept": kept * loops,
                "buffers": int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0)),
                "ms": round(float(node.get("Actual Total Time", 0)) * loops, 2),
            }
        )
    for child in node.get("Plans", []):
        found += scans(child)
    return found


def generic_scans(node: dict[str, Any]) -> list[str]:
    """The indexes (or the sequential scan) a plan without ``EXPLAIN ANALYZE``'s figures reads."""
    found = []
    if node.get("Index Name") or (
        node.get("Relation Name") == "notifications" and node["Node Type"] == "Seq Scan"
    ):
        found.append(node.get("Index Name") or node["Node Type"])
    for child in node.get("Plans", []):
        found += generic_scans(child)
    return found


async def in_rollback(
    conn: asyncpg.Connection, prelude: Sequence[str], sql: str, args: Sequence[Any]
) -> tuple[list[asyncpg.Record], float]:
    """``sql``'s rows and its milliseconds, after ``prelude``, in a transaction rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        for statement in prelude:
            await conn.execute(statement)
        start = time.perf_counter()
        rows = await conn.fetch(sql, *args)
        return rows, (time.perf_counter() - start) * 1000
    finally:
        await tr.rollback()


async def measure(
    conn: asyncpg.Connection,
    prelude: Sequence[str],
    sql: str,
    args: Sequence[Any],
    repeat: int,
    outcome: Callable[[list[asyncpg.Record]], Any],
) -> dict[str, Any]:
    """The median of ``repeat`` timed runs, what each returned (``outcome`` of its rows), and one
    ``EXPLAIN (ANALYZE, BUFFERS)``: the scans of ``notifications``, the buffers, the triggers' time,
    and the scans a generic plan (``plan_cache_mode = force_generic_plan``, as a prepared statement
    may come to run) would make."""
    times, outcomes = [], []
    for _ in range(repeat):
        rows, ms = await in_rollback(conn, prelude, sql, args)
        times.append(ms)
        outcomes.append(outcome(rows))
    explained, _ = await in_rollback(conn, prelude, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, args)
    plan = json.loads(explained[0][0])[0]
    top = plan["Plan"]
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        generic, _ = await in_rollback(conn, prelude, "EXPLAIN (FORMAT JSON) " + sql, args)
    finally:
        await conn.execute("RESET plan_cache_mode")
    triggers = sum(float(t.get("Time", 0)) for t in plan.get("Triggers", []))
    return {
        "returned": outcomes[0],
        "same_each_run": all(o == outcomes[0] for o in outcomes),
        "ms_median": round(statistics.median(times), 2),
        "ms_each": [round(t, 2) for t in times],
        "explain_ms": round(plan["Execution Time"], 2),
        "trigger_ms": round(triggers, 2),
        "buffers_hit": top.get("Shared Hit Blocks", 0),
        "buffers_read": top.get("Shared Read Blocks", 0),
        "scans": scans(top),
        "generic_plan_scans": generic_scans(json.loads(generic[0][0])[0]["Plan"]),
    }
