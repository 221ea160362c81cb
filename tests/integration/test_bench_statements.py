"""``bench.statements`` counts what the services ran, per event, from PostgreSQL's own statistics
(a cluster of its own, started with ``pg_stat_statements`` loaded)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from bench import statements
from devstack.embedded import EmbeddedPostgres
from shared.db import ensure_login_role


async def test_statements_per_event_count_the_services_work_and_not_the_benchmarks(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # the embedded PostgreSQL runs as its own system user
    pg = EmbeddedPostgres(tmp_path / "pgdata", cleanup="delete", statement_statistics=True)
    try:
        dsn = pg.create_database("work")
        admin = await asyncpg.connect(dsn)
        await ensure_login_role(admin, "svc")
        await admin.execute("CREATE TABLE things (n int PRIMARY KEY); GRANT ALL ON things TO svc")
        await statements.reset(pg.admin_dsn)
        service = await asyncpg.connect(dsn, user="svc")
        for start in (0, 100):  # two batches of 100 "events"
            await service.execute("INSERT INTO things SELECT generate_series($1::int, $1::int + 99)", start)
        await admin.execute("CHECKPOINT")  # the next change to each page writes the page whole
        await service.execute("UPDATE things SET n = n + 1000 WHERE n < 50")
        await admin.execute("SELECT count(*) FROM things")  # the benchmark's own poll: not counted
        await service.close()
        await admin.close()

        result = await statements.per_event(pg.admin_dsn, events=200)

        work = result["per_event"]["work"]
        assert work["statements"] == 3 / 200
        assert work["rows"] == (200 + 50) / 200
        assert work["exec_us"] > 0 and work["wal_bytes"] > 0
        assert result["per_event"]["all"] == work
        assert sorted(s["statement"].split()[0] for s in result["top"]) == ["INSERT", "UPDATE"]
        update = next(s for s in result["top"] if s["statement"].startswith("UPDATE"))
        assert update["wal_full_pages"] >= 2 / 200  # the table's page and its key's, after the checkpoint
        assert "| work | 0.015 | 1.25 |" in statements.markdown(result)
    finally:
        pg.stop()
