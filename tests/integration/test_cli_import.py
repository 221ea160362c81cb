"""``exchangectl import`` into a real registry database: batches, rejects, resuming without duplicates."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack.roster_fixture import EXPECTED_RULE, generate
from shared.db import init_connection, migrate
from shared.events.catalog import parse_event
from tests.helpers import query

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def registry_db(fresh_db: str) -> str:
    asyncio.run(migrate(fresh_db, "registry", ROOT / "services" / "registry" / "migrations"))
    return fresh_db


def _import(dsn: str, roster: Path, *extra: str) -> dict[str, object]:
    result = runner.invoke(
        app, ["import", str(roster), "-j", "320412", "--dsn", dsn, "--batch-size", "250", "--json", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _rejects(path: Path) -> dict[int, str]:
    with path.open(encoding="utf-8") as f:
        return {int(r["line"]): r["rule"] for r in csv.DictReader(f)}


def test_an_interrupted_import_resumes_and_ends_with_every_good_row_once(
    registry_db: str, tmp_path: Path
) -> None:
    roster = tmp_path / "roster.csv"
    info = generate(roster, 2000, 20, encoding="gb18030", migrant_share=0.1)
    planted = {line: kind for kind, lines in info["planted"].items() for line in lines}

    first = _import(
        registry_db, roster, "--stop-after", "1000", "--workers", "2"
    )  # checked in worker processes
    assert first["state"] == "running" and first["rows_read"] == 1000
    second = _import(registry_db, roster)
    assert second["state"] == "done" and second["resumed_after_line"] == 1001
    assert second["total_imported"] == 1980 and second["total_rejected"] == 20

    persons = query(registry_db, "SELECT count(*) AS n, count(DISTINCT id_number) AS d FROM persons")[0]
    assert persons["n"] == persons["d"] == 1980
    rejects = _rejects(Path(second["rejects_file"]))  # type: ignore[arg-type]
    assert rejects == {line: EXPECTED_RULE[kind] for line, kind in planted.items()}

    # every person announced once, in the envelope the API writes, keyed by subject, never by number
    events = query(registry_db, "SELECT key, value FROM outbox ORDER BY id")
    assert len(events) == 1980
    parsed = [parse_event(bytes(e["value"])) for e in events]
    assert {e.type for e in parsed} == {"person.registered.v1"}
    assert len({e.data.id_number for e in parsed}) == len({e.id for e in parsed}) == 1980
    assert all(p.sequence == 1 and row["key"] == p.subject for row, p in zip(events, parsed, strict=True))
    # each person row names the event that announced it, as the API's register_person does
    recorded = {
        r["id_number"]: r["event_id"] for r in query(registry_db, "SELECT id_number, event_id FROM persons")
    }
    assert all(recorded[e.data.id_number] == e.id for e in parsed)
    migrants = [p for p in parsed if p.destination != p.origin]
    assert migrants and all(p.destination == "440703" for p in migrants)

    again = _import(registry_db, roster)  # a finished import is not repeated
    assert again["rows_read"] == 0 and again["total_imported"] == 1980
    assert query(registry_db, "SELECT count(*) AS n FROM outbox")[0]["n"] == 1980


def test_a_killed_import_rolls_back_its_open_batch_and_resumes(registry_db: str, tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    generate(roster, 3000, 0, seed=99)
    cmd = [sys.executable, "-m", "cli.main", "import", str(roster), "-j", "320412", "--dsn", registry_db,
           "--batch-size", "100", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = query(registry_db, "SELECT to_regclass('import_runs') IS NOT NULL AS ok")
        if (
            rows[0]["ok"]
            and query(registry_db, "SELECT coalesce(max(last_line), 0) AS l FROM import_runs")[0]["l"] > 300
        ):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = query(registry_db, "SELECT last_line FROM import_runs")[0]["last_line"]
    assert 300 < done < 3001, "the import was not stopped part way"
    # what was committed is whole: persons and events of the committed batches only
    assert query(registry_db, "SELECT count(*) AS n FROM persons")[0]["n"] == done - 1
    assert query(registry_db, "SELECT count(*) AS n FROM outbox")[0]["n"] == done - 1

    summary = _import(registry_db, roster)
    assert summary["total_imported"] == 3000 and summary["total_rejected"] == 0
    assert query(registry_db, "SELECT count(*) AS n FROM outbox")[0]["n"] == 3000


def test_xlsx_rosters_and_people_registered_before(registry_db: str, tmp_path: Path) -> None:
    roster = tmp_path / "roster.xlsx"
    generate(roster, 200, 0, seed=5)
    first = _import(registry_db, roster, "--stop-after", "100", "--batch-size", "50")
    assert first["imported"] == 100

    # a corrected roster, as a new file: the first 100 people are registered already, same details
    # (skipped, not rejected); one has another name here (refused, as the API refuses it)
    copy = tmp_path / "copy.csv"
    generate(copy, 200, 0, seed=5)
    lines = copy.read_text(encoding="utf-8").splitlines()
    cells = lines[10].split(",")
    lines[10] = ",".join([cells[0], "另一个名字", *cells[2:]])
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = _import(registry_db, copy, "--rejects", str(tmp_path / "copy.rejects.csv"))
    assert (summary["imported"], summary["unchanged"], summary["rejected"]) == (100, 99, 1)
    assert _rejects(tmp_path / "copy.rejects.csv") == {11: "no-duplicate"}
    assert query(registry_db, "SELECT count(*) AS n FROM outbox")[0]["n"] == 200


def test_a_roster_missing_a_column_is_refused_before_anything_is_written(
    registry_db: str, tmp_path: Path
) -> None:
    roster = tmp_path / "bad.csv"
    roster.write_text("姓名,性别\n王芳,女\n", encoding="utf-8")
    result = runner.invoke(app, ["import", str(roster), "-j", "320412", "--dsn", registry_db])
    assert result.exit_code == 2
    assert "id_number" in result.output
    assert query(registry_db, "SELECT count(*) AS n FROM persons")[0]["n"] == 0


async def test_two_imports_of_the_same_roster_at_once_write_it_once(registry_db: str, tmp_path: Path) -> None:
    from cli.importer import ImportBusy, Importer

    roster = tmp_path / "roster.csv"
    generate(roster, 500, 0, seed=17)
    runs = [Importer(registry_db, roster, "320412", b"secret", batch_size=50).run() for _ in range(2)]
    outcomes = await asyncio.gather(*runs, return_exceptions=True)
    # the second finds the first at work (refused) or already done (nothing to do): never both writing
    assert all(isinstance(o, ImportBusy) for o in outcomes if isinstance(o, BaseException))
    finished = [o for o in outcomes if not isinstance(o, BaseException)]
    assert sum(o.rows_read for o in finished) == 500 and finished[0].total_imported == 500
    conn = await asyncpg.connect(registry_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 500
    finally:
        await conn.close()


async def test_the_registrys_import_use_case_applies_the_registration_rule_itself(registry_db: str) -> None:
    """Whatever the caller checked before: a row whose sex or birth date the identity number
    contradicts is refused by the use case with the rule ``POST /v1/persons`` names."""
    import datetime as dt

    from services.registry.service_layer import imports
    from services.registry.service_layer.context import Context
    from services.registry.settings import RegistrySettings
    from shared.identity import compose_id_number

    born = dt.date(1990, 3, 4)
    good, wrong_sex, wrong_date = (compose_id_number("320412", born, n, "F") for n in (10, 11, 12))
    person = {"name": "王芳", "sex": "F", "birth_date": born, "hukou_division": "320412"}
    people = [
        (2, {**person, "id_number": good}),
        (3, {**person, "id_number": wrong_sex, "sex": "M"}),
        (4, {**person, "id_number": wrong_date, "birth_date": dt.date(1990, 3, 5)}),
    ]
    batch = imports.ImportBatch("test", 2, 4, people, [], {})
    ctx = Context(RegistrySettings(jurisdictions="320412"))
    conn = await asyncpg.connect(registry_db)
    await init_connection(conn)  # as every connection of the registry's
    try:
        await imports.start(conn, "320412", "test", "roster.csv")
        async with conn.transaction():
            outcome = await imports.import_batch(conn, ctx, "320412", batch)
        refused = [(r["line"], r["field"], r["rule"]) for r in await imports.rejects(conn, "320412", "test")]
        persons = await conn.fetch("SELECT id_number, event_id FROM persons")
        events = await conn.fetch("SELECT event_id FROM outbox")
    finally:
        await conn.close()
    assert outcome == imports.BatchOutcome(imported=1, unchanged=0, rejected=2)
    assert refused == [(3, "sex", "sex-matches-id-number"), (4, "birth_date", "birth-date-matches-id-number")]
    assert [(p["id_number"], p["event_id"]) for p in persons] == [(good, events[0]["event_id"])]
