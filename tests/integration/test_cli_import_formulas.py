"""``exchangectl import`` keeps formulas out of the registry, and tells the clerk what to do in 中文 and English.

Real rosters (a GB18030 CSV, an XLSX with text cells as Excel stores them), the real command, the
real registry database.
"""

from __future__ import annotations

import asyncio
import csv
import json
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.cell import WriteOnlyCell
from typer.testing import CliRunner

from cli.main import app
from cli.roster import DEFAULT_MAPPING
from devstack.roster_fixture import HEADER, generate
from shared.db import migrate
from shared.events.catalog import parse_event
from shared.text import looks_like_formula
from tests.helpers import query

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

# line -> name: the three of the issue, then each other prefix OWASP lists and a full-width one;
# the carriage return last, as it starts a second physical line in a CSV (later lines move by one)
PLANTED = {
    3: "=1+2",
    7: '=HYPERLINK("http://evil.example/x","张三")',
    12: "-2+3+cmd|' /C calc'!A0",
    20: "+1-1",
    25: "@SUM(A1:A2)",
    31: "\t=1+2",
    36: "＝1+2",
    40: '\r=HYPERLINK("http://evil.example")',
}


@pytest.fixture
def registry_db(fresh_db: str) -> str:
    asyncio.run(migrate(fresh_db, "registry", ROOT / "services" / "registry" / "migrations"))
    return fresh_db


def _rows(tmp_path: Path, n: int, seed: int, planted: dict[int, str] = PLANTED) -> list[list[str]]:
    """Good rows of a county roster, with the planted names put in."""
    plain = tmp_path / f"plain-{seed}.csv"
    generate(plain, n, 0, seed=seed)
    with plain.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[1:]
    for line, name in planted.items():
        rows[line - 2][1] = name
    return rows


def _import(dsn: str, roster: Path, *extra: str) -> tuple[dict[str, object], str]:
    result = runner.invoke(
        app, ["import", str(roster), "-j", "320412", "--dsn", dsn, "--batch-size", "10", "--json", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def _check_registry(dsn: str, expected_people: int) -> None:
    """Nobody with a formula for a name was registered or announced."""
    names = [r["name"] for r in query(dsn, "SELECT name FROM persons")]
    assert len(names) == expected_people and not [n for n in names if looks_like_formula(n)]
    events = [parse_event(bytes(r["value"])) for r in query(dsn, "SELECT value FROM outbox")]
    assert len(events) == expected_people
    assert not [e for e in events if looks_like_formula(e.data.name)]


def test_a_gb18030_roster_with_formula_names_rejects_every_one_with_the_rule(
    registry_db: str, tmp_path: Path
) -> None:
    roster = tmp_path / "花名册.csv"
    rows = _rows(tmp_path, 60, seed=31)
    with roster.open("w", encoding="gb18030", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)

    summary, _ = _import(registry_db, roster, "--rejects", str(tmp_path / "rejects.csv"))
    assert (summary["total_imported"], summary["total_rejected"]) == (60 - len(PLANTED), len(PLANTED))
    assert summary["rules"] == {"no-formula-prefix": len(PLANTED)}
    with (tmp_path / "rejects.csv").open(encoding="utf-8", newline="") as f:
        rejects = {int(r["line"]): r for r in csv.DictReader(f)}
    assert sorted(rejects) == sorted(PLANTED)
    assert all(r["field"] == "name" and r["rule"] == "no-formula-prefix" for r in rejects.values())
    assert all("公式" in r["说明"] and "formula" in r["message"] for r in rejects.values())
    _check_registry(registry_db, 60 - len(PLANTED))


def test_an_xlsx_roster_with_formula_text_is_refused_and_the_rejects_can_be_a_workbook(
    registry_db: str, tmp_path: Path
) -> None:
    roster = tmp_path / "roster.xlsx"
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("花名册")
    sheet.append(HEADER)
    for row in _rows(tmp_path, 50, seed=32):
        cells = []
        for value in row:  # text cells, as Excel stores a cell typed '=1+2: openpyxl would make a formula
            cell = WriteOnlyCell(sheet, value=value)
            cell.data_type = "s"
            cells.append(cell)
        sheet.append(cells)
    book.save(roster)

    summary, _ = _import(registry_db, roster, "--rejects", str(tmp_path / "rejects.xlsx"))
    assert (summary["total_imported"], summary["total_rejected"]) == (50 - len(PLANTED), len(PLANTED))
    sheet = openpyxl.load_workbook(tmp_path / "rejects.xlsx")["rejects"]
    table = list(sheet.iter_rows(values_only=True))
    assert table[0] == ("line", "field", "rule", "message", "说明")
    assert {r[0]: (r[1], r[2]) for r in table[1:]} == {
        line: ("name", "no-formula-prefix") for line in PLANTED
    }
    _check_registry(registry_db, 50 - len(PLANTED))


def test_a_missing_heading_is_named_with_how_to_map_it_and_the_mapping_then_works(
    registry_db: str, tmp_path: Path
) -> None:
    roster = tmp_path / "乡镇花名册.csv"
    generate(roster, 30, 0, seed=33, encoding="gb18030")
    text = roster.read_bytes().decode("gb18030").replace("公民身份号码", "证件号码", 1)
    roster.write_bytes(text.encode("gb18030"))

    result = runner.invoke(app, ["import", str(roster), "-j", "320412", "--dsn", registry_db])
    assert result.exit_code == 2
    said = result.stderr
    zh = said.index("花名册缺少必需的列“公民身份号码”（字段 id_number）")
    en = said.index("The roster has no column for id_number (公民身份号码)")
    assert zh < en  # Chinese first, then English
    assert str(DEFAULT_MAPPING) in said and "--mapping" in said
    advice = "id_number: [公民身份号码, 身份证号码, 身份证号, id_number, 证件号码]"
    assert said.count(advice) == 2  # the line to add, in both languages' instructions
    assert query(registry_db, "SELECT count(*) AS n FROM persons")[0]["n"] == 0

    # doing what the message says makes the roster importable
    mapping = tmp_path / "乡镇.yaml"
    mapping.write_text(
        DEFAULT_MAPPING.read_text(encoding="utf-8").replace(
            "  id_number: [公民身份号码, 身份证号码, 身份证号, id_number]", f"  {advice}"
        ),
        encoding="utf-8",
    )
    summary, _ = _import(registry_db, roster, "--mapping", str(mapping))
    assert summary["total_imported"] == 30


def test_a_resumed_import_says_from_which_line_it_resumed(registry_db: str, tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    generate(roster, 100, 0, seed=34, encoding="gb18030")
    first, said = _import(registry_db, roster, "--stop-after", "40")
    assert first["state"] == "running" and "续导" not in said and "Resuming" not in said
    last = int(first["rows_read"]) + 1  # the heading is line 1
    assert query(registry_db, "SELECT last_line FROM import_runs")[0]["last_line"] == last

    second, said = _import(registry_db, roster)
    assert second["resumed_after_line"] == last and second["total_imported"] == 100
    assert f"从第 {last + 1} 行继续导入" in said and f"this run starts at line {last + 1}" in said
    assert said.index("续导") < said.index("Resuming")

    result = runner.invoke(app, ["import", str(roster), "-j", "320412", "--dsn", registry_db])
    assert result.exit_code == 0
    assert (
        "此前已全部导入" in result.stderr and "imported completely before (up to line 101)" in result.stderr
    )
    assert "导入完成" in result.stdout and "import complete" in result.stdout


def test_an_xlsx_formula_cell_counts_as_the_value_excel_shows(registry_db: str, tmp_path: Path) -> None:
    """Formula cells as Excel saves them (the formula and its last result): the result is the cell's
    data; a result that itself begins like a formula is refused like typed text."""
    rows = _rows(tmp_path, 12, seed=35, planted={})  # lines 3 and 7 get formulas below
    built = tmp_path / "built.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    sheet["B3"] = '=HYPERLINK("http://evil.example/x","张三")'
    sheet["B7"] = '="="&"1+2"'
    book.save(built)
    # openpyxl leaves a formula's result empty; Excel stores it next to the formula
    roster = tmp_path / "roster.xlsx"
    with zipfile.ZipFile(built) as src, zipfile.ZipFile(roster, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                xml = data.decode()
                xml = xml.replace('<c r="B3"><f>', '<c r="B3" t="str"><f>').replace(
                    "</f><v /></c>", "</f><v>张三</v></c>", 1
                )
                xml = xml.replace('<c r="B7"><f>', '<c r="B7" t="str"><f>').replace(
                    "</f><v /></c>", "</f><v>=1+2</v></c>", 1
                )
                data = xml.encode()
            dst.writestr(item, data)

    summary, _ = _import(registry_db, roster, "--rejects", str(tmp_path / "rejects.csv"))
    assert (summary["total_imported"], summary["total_rejected"]) == (11, 1)
    with (tmp_path / "rejects.csv").open(encoding="utf-8", newline="") as f:
        assert [(r["line"], r["field"], r["rule"]) for r in csv.DictReader(f)] == [
            ("7", "name", "no-formula-prefix")
        ]
    number = rows[1][0]  # line 3
    assert query(registry_db, "SELECT name FROM persons WHERE id_number = $1", number)[0]["name"] == "张三"
    _check_registry(registry_db, 11)
