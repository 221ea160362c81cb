"""Names and free text are data, never formulas: one rule at the API, at the import and in exports."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from pydantic import ValidationError

from cli.audit_cmd import _csv as audit_csv
from cli.sheets import write_table
from cli.validation import validate_row
from services.migrant_exchange.entrypoints.api import FeedbackIn
from services.migrant_exchange.entrypoints.reconciliation import ResolutionIn
from services.registry.entrypoints.schemas_certificates import RevocationIn
from services.registry.entrypoints.schemas_vital_events import BirthIn, CorrectionIn, MigrationIn, PersonIn
from shared.identity import compose_id_number
from shared.text import PATTERN, RULE, looks_like_formula, spreadsheet_cell

GOOD = compose_id_number("110101", dt.date(1990, 3, 4), 7, "F")
# The names of the issue, then each prefix OWASP lists, and the full-width forms a Chinese IME types.
FORMULAS = [
    "=1+2",
    '=HYPERLINK("http://evil.example/x","张三")',
    "-2+3+cmd|' /C calc'!A0",
    "+1-1",
    "@SUM(A1:A2)",
    "\t=1+2",
    "\r=1+2",
    " =1+2",
    "＝1+2",
    "＠SUM(A1)",
]
DATA = ["张三", "李秀英", "Anne-Marie", "a=b", "O'Brien", "阿卜杜拉·买买提"]


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_like_text_is_recognised(text: str) -> None:
    assert looks_like_formula(text)
    assert spreadsheet_cell(text) == "'" + text


@pytest.mark.parametrize("text", DATA)
def test_ordinary_names_are_data(text: str) -> None:
    assert not looks_like_formula(text)
    assert spreadsheet_cell(text) == text


def _errors(model: Any, body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as e:
        model.model_validate(body)
    return [(".".join(str(p) for p in err["loc"]), err["type"]) for err in e.value.errors()]


PERSON = {
    "id_number": GOOD,
    "name": "王芳",
    "sex": "F",
    "birth_date": "1990-03-04",
    "hukou_division": "320412",
}


@pytest.mark.parametrize("text", FORMULAS)
def test_every_api_text_field_refuses_formulas_naming_field_and_rule(text: str) -> None:
    birth = {
        "medical_certificate_number": "O440123456",
        "child_name": text,
        "child_sex": "M",
        "child_birth_date": "2025-09-01",
        "mother_id_number": GOOD,
    }
    move = {"kind": "arrived", "id_number": GOOD, "from_division": "320412", "to_division": "440703",
            "migration_date": "2025-01-01", "name": text}  # fmt: skip
    correction = {"corrected_event_id": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "record_type": "birth",
                  "record_id": "x", "changes": {"child_name": text, "birth_order": 2}, "reason": "typo"}  # fmt: skip
    assert _errors(PersonIn, {**PERSON, "name": text}) == [("name", RULE)]
    assert _errors(BirthIn, birth) == [("child_name", RULE)]
    assert _errors(MigrationIn, move) == [("name", RULE)]
    assert _errors(CorrectionIn, correction) == [("changes.child_name", RULE)]
    assert _errors(CorrectionIn, {**correction, "changes": {"birth_order": 2}, "reason": text + "x"}) == [
        ("reason", RULE)
    ]
    assert _errors(RevocationIn, {"reason": text + "xyz"}) == [("reason", RULE)]
    assert _errors(FeedbackIn, {"outcome": "rejected", "reason": text}) == [("reason", RULE)]
    assert _errors(ResolutionIn, {"action": "dismiss", "note": text}) == [("note", RULE)]


def test_leading_white_space_is_neutralised_and_ordinary_names_pass() -> None:
    assert PersonIn.model_validate({**PERSON, "name": "\t张三\r"}).name == "张三"
    for name in DATA:
        assert PersonIn.model_validate({**PERSON, "name": name}).name == name
    # the OpenAPI document states the rule where the field is
    schema = PersonIn.model_json_schema()["properties"]["name"]
    assert schema["pattern"] == PATTERN and schema["maxLength"] == 64


@pytest.mark.parametrize("field", ["name", "id_number", "sex", "birth_date", "hukou_division"])
def test_the_import_refuses_a_formula_in_any_column_with_the_same_rule(field: str) -> None:
    person, error = validate_row({**PERSON, field: "=1+2"})
    assert person is None and error is not None
    assert error[:2] == (field, RULE)
    person, error = validate_row({**PERSON, "name": "-2+3+cmd|' /C calc'!A0"})
    assert person is None and error is not None and error[:2] == ("name", RULE)


def test_csv_and_xlsx_tables_escape_formula_cells(tmp_path: Path) -> None:
    rows = [[2, text, "x"] for text in FORMULAS] + [[99, "张三", None]]
    write_table(tmp_path / "t.csv", ["line", "name", "note"], rows)
    with (tmp_path / "t.csv").open(encoding="utf-8", newline="") as f:
        read = list(csv.reader(f))
    assert [r[1] for r in read[1:]] == ["'" + t for t in FORMULAS] + ["张三"]

    write_table(tmp_path / "t.xlsx", ["line", "name", "note"], rows, sheet="rejects")
    book = openpyxl.load_workbook(tmp_path / "t.xlsx")  # formulas as written, not their results
    sheet = book["rejects"]
    cells = [row[1] for row in sheet.iter_rows(min_row=2)]
    assert all(c.data_type == "s" for c in cells)  # text, none of them a formula
    # (XML reads a carriage return back as a line feed)
    assert [c.value for c in cells] == ["'" + t.replace("\r", "\n") for t in FORMULAS] + ["张三"]
    assert sheet.cell(row=2, column=1).value == 2 and sheet.cell(row=len(rows) + 1, column=3).value is None


def test_the_audit_export_escapes_its_cells() -> None:
    entry = {
        "at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        "service": "registry",
        "seq": 7,
        "client_id": "=cmd|' /C calc'!A0",
        "action": "read",
        "purpose": "@registration",
        "detail": {"fields": ["name"]},
    }
    rows = list(csv.reader(audit_csv([entry]).splitlines()))
    assert rows[1][3] == "'=cmd|' /C calc'!A0" and rows[1][5] == "'@registration"
    assert rows[1][6] == '{"fields": ["name"]}'
