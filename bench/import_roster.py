"""Benchmark: ``exchangectl import`` of the 100,000-row sample roster (200 planted bad rows).

Scenario A imports the roster into the running stack's registry 320412 in one go and waits until
the registry's relay has published every event. Scenario B imports it into a fresh registry
database, interrupts the import with SIGINT at about half, runs it again and checks that every
good row is there exactly once. Target: each import under 60 s on 2 cores.

    python -m bench.import_roster [--rows 100000] [--bad 200]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devstack.embedded import EmbeddedPostgres
from devstack.roster_fixture import generate
from devstack.stack import ORIGIN, ROOT, Stack
from shared.db import migrate

CACHE = ROOT / ".run" / "bench"


def _query(dsn: str, sql: str) -> Any:
    import asyncpg

    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def _import(args: list[str]) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "import", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return time.monotonic() - started, json.loads(out.stdout)


def roster(rows: int, bad: int) -> tuple[Path, float]:
    path = CACHE / f"roster-{rows}-{bad}.csv"
    if path.exists():
        return path, 0.0
    started = time.monotonic()
    generate(path, rows, bad, migrant_share=0.1)
    return path, time.monotonic() - started


def one_go(stack: Stack, path: Path, rows: int) -> dict[str, Any]:
    """Into the running registry, in one go; then until its relay has published every event."""
    dsn = stack.service(f"registry-{ORIGIN}").dsn
    seconds, summary = _import([str(path), "-j", ORIGIN, "--stack", str(stack.run_dir / "stack.json")])
    published_at = time.monotonic()
    while (
        _query(dsn, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        and time.monotonic() - published_at < 300
    ):
        time.sleep(0.2)
    return {
        "seconds": round(seconds, 1),
        "load_average_1min_after": round(os.getloadavg()[0], 1),
        "rows_per_second": round(rows / seconds),
        "imported": summary["total_imported"],
        "rejected": summary["total_rejected"],
        "rejects_file_lines": _lines(Path(summary["rejects_file"])),
        "published": _query(dsn, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"),
        "all_published_after_import_s": round(time.monotonic() - published_at, 1),
    }


def interrupted(pg: EmbeddedPostgres, path: Path, rows: int, d: Path) -> dict[str, Any]:
    """Into a fresh registry database: SIGINT at about half, then the same command again."""
    fresh = pg.create_database("bench_registry_b")
    asyncio.run(migrate(fresh, "registry", ROOT / "services" / "registry" / "migrations"))
    args = [str(path), "-j", ORIGIN, "--dsn", fresh, "--rejects", str(d / "b.rejects.csv")]
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "import", *args, "--json"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while proc.poll() is None:
        if _query(fresh, "SELECT to_regclass('import_runs') IS NOT NULL") and (
            _query(fresh, "SELECT coalesce(max(last_line), 0) FROM import_runs") >= rows // 2
        ):
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    proc.wait()
    first = time.monotonic() - started
    stopped_at = _query(fresh, "SELECT last_line FROM import_runs")
    second, summary = _import(args)
    return {
        "load_average_1min_after": round(os.getloadavg()[0], 1),
        "stopped_after_line": stopped_at,
        "first_run_seconds": round(first, 1),
        "resume_seconds": round(second, 1),
        "total_seconds": round(first + second, 1),
        "imported": summary["total_imported"],
        "rejected": summary["total_rejected"],
        "persons": _query(fresh, "SELECT count(*) FROM persons"),
        "distinct_persons": _query(fresh, "SELECT count(DISTINCT id_number) FROM persons"),
        "outbox_events": _query(fresh, "SELECT count(*) FROM outbox"),
    }


def run(rows: int = 100_000, bad: int = 200) -> dict[str, Any]:
    path, generated_in = roster(rows, bad)
    result: dict[str, Any] = {"rows": rows, "bad": bad, "generate_seconds": round(generated_in, 1)}
    with tempfile.TemporaryDirectory(prefix="bench-import-") as d:
        os.chmod(d, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as its own system user
        pg = EmbeddedPostgres(Path(d) / "pgdata", cleanup="delete")
        stack = Stack(Path(d) / "stack", pg=pg, db_prefix="bench_")
        try:
            stack.start()
            # the interrupted run first: the one-go run leaves the exchange busy routing 100,000 events
            result["interrupted"] = interrupted(pg, path, rows, Path(d))
            result["one_go"] = one_go(stack, path, rows)
        finally:
            stack.stop()
            pg.stop()
    return result


def _lines(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def rows_for_report(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows bench/report.py shows: the 60 s target, rejects, publication, resumption."""
    a, b = r["one_go"], r["interrupted"]
    good = r["rows"] - r["bad"]
    return [
        {
            "metric": f"import {r['rows']:,} rows in one go",
            "value": a["seconds"],
            "unit": "s",
            "target": "< 60 s",
            "met": a["seconds"] < 60,
        },
        {"metric": "rows/s (one go, services consuming)", "value": a["rows_per_second"], "unit": "rows/s"},
        {
            "metric": "rejects file lines",
            "value": a["rejects_file_lines"],
            "unit": "lines",
            "target": f"= {r['bad']}",
            "met": a["rejects_file_lines"] == r["bad"],
        },
        {
            "metric": "events published",
            "value": a["published"],
            "unit": "events",
            "target": f"= {good:,}",
            "met": a["published"] == good,
        },
        {
            "metric": "interrupted at half + resumed",
            "value": b["total_seconds"],
            "unit": "s",
            "target": "< 60 s",
            "met": b["total_seconds"] < 60,
        },
        {
            "metric": "persons after resume (no duplicate)",
            "value": b["distinct_persons"],
            "unit": "persons",
            "target": f"= {good:,}",
            "met": b["persons"] == b["distinct_persons"] == b["outbox_events"] == good,
        },
    ]


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bad", type=int, default=200)
    args, _ = parser.parse_known_args()
    result = run(args.rows, args.bad)
    result["rows_report"] = rows_for_report(result)
    print(json.dumps(result, indent=2))
    from bench.common import write_result

    write_result("import_roster", {**result, "rows": result["rows_report"], "roster_rows": result["rows"]})
    return result


if __name__ == "__main__":
    main()
