"""PostgreSQL's own account of a benchmark's statements (``pg_stat_statements``): per event, how
many of each ran, the rows they touched, their execution time and the WAL they wrote (bytes, and
how many full-page images: the first change to a page after a checkpoint writes the whole page),
by database.

The cluster loads the extension when started with
``EmbeddedPostgres(..., statement_statistics=True)``; the benchmark calls ``reset`` where its
measured part begins and ``per_event`` where it ends. Statements of the benchmark's own connection
role (its progress polls) are left out: only the services' work is counted.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

STATEMENT_CHARS = 110  # enough to tell the statements apart in a table


async def reset(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def per_event(admin_dsn: str, events: int, top: int = 20) -> dict[str, Any]:
    """Totals per database and the ``top`` statements by execution time, each per event."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch(
            """SELECT d.datname AS database, s.query, s.calls, s.rows, s.total_exec_time AS exec_ms,
                      s.wal_bytes, s.wal_fpi
               FROM pg_stat_statements s
               JOIN pg_database d ON d.oid = s.dbid
               JOIN pg_roles r ON r.oid = s.userid
               WHERE r.rolname <> current_user
               ORDER BY s.total_exec_time DESC"""
        )
    finally:
        await conn.close()
    n = max(events, 1)

    def figures(calls: float, touched: float, exec_ms: float, wal: float, fpi: float) -> dict[str, float]:
        return {
            "statements": round(calls / n, 4),
            "rows": round(touched / n, 2),
            "exec_us": round(exec_ms * 1000 / n, 1),
            "wal_bytes": round(wal / n),
            "wal_full_pages": round(fpi / n, 3),
        }

    def measures(r: asyncpg.Record) -> tuple[float, ...]:
        return (r["calls"], r["rows"], r["exec_ms"], float(r["wal_bytes"] or 0), float(r["wal_fpi"] or 0))

    databases: dict[str, list[float]] = {}
    for r in rows:
        total = databases.setdefault(r["database"], [0.0] * 5)
        for i, value in enumerate(measures(r)):
            total[i] += value
    everything = [sum(t[i] for t in databases.values()) for i in range(5)]
    return {
        "per_event": {
            "all": figures(*everything),
            **{db: figures(*t) for db, t in sorted(databases.items())},
        },
        "top": [
            {
                "database": r["database"],
                "statement": re.sub(r"\s+", " ", r["query"])[:STATEMENT_CHARS],
                **figures(*measures(r)),
            }
            for r in rows[:top]
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    """The per-event figures as Markdown tables (for ``docs/scale.md``)."""
    lines = [
        "| database | statements | rows | execution (us) | WAL (bytes) | WAL full pages |",
        "|---|---|---|---|---|---|",
    ]
    for db, f in result["per_event"].items():
        lines.append(
            f"| {db} | {f['statements']} | {f['rows']} | {f['exec_us']} | {f['wal_bytes']:,} | {f['wal_full_pages']} |"
        )
    lines += [
        "",
        "| database | statement | per event: runs, rows, us, WAL bytes, WAL full pages |",
        "|---|---|---|",
    ]
    for s in result["top"]:
        text = s["statement"].replace("|", "\\|")
        lines.append(
            f"| {s['database']} | `{text}` | {s['statements']}, {s['rows']}, {s['exec_us']}, {s['wal_bytes']:,}, "
            f"{s['wal_full_pages']} |"
        )
    return "\n".join(lines)
