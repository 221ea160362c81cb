"""Reading legacy rosters and validating their rows, without a database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cli.roster import Mapping, RosterError, detect_encoding, read_roster
from cli.validation import validate_row
from devstack.roster_fixture import BAD_KINDS, EXPECTED_RULE, generate
from shared.identity import compose_id_number

GOOD = compose_id_number("110101", dt.date(1990, 3, 4), 7, "F")


def _row(**over: str) -> dict[str, str]:
    row = {
        "id_number": GOOD,
        "name": "王芳",
        "sex": "F",
        "birth_date": "1990-03-04",
        "hukou_division": "320412",
    }
    row.update(over)
    return {k: v for k, v in row.items() if v != ""}


def test_a_good_row_becomes_the_person_the_api_would_record() -> None:
    person, error = validate_row(_row())
    assert error is None and person is not None
    assert person["birth_date"] == dt.date(1990, 3, 4)
    assert person["residence_division"] == "320412"  # defaults to the hukou division, as the API does


@pytest.mark.parametrize(
    ("over", "field", "rule"),
    [
        ({"id_number": GOOD[:-1] + ("0" if GOOD[-1] != "0" else "1")}, "id_number", "gb11643-check-digit"),
        ({"hukou_division": "329999"}, "hukou_division", "gb2260-known-division"),
        ({"birth_date": "2999-01-01"}, "birth_date", "not-in-future"),
        ({"name": ""}, "name", "missing"),
        ({"sex": "X"}, "sex", "literal_error"),
        ({"birth_date": "1990-03-05"}, "birth_date", "birth-date-matches-id-number"),
        ({"sex": "M"}, "sex", "sex-matches-id-number"),
    ],
)
def test_a_bad_row_names_the_field_and_rule(over: dict[str, str], field: str, rule: str) -> None:
    person, error = validate_row(_row(**over))
    assert person is None and error is not None
    assert error[0] == field and error[1] == rule
    assert GOOD not in error[2]  # never echo the identity number


def test_the_mapping_translates_a_county_roster_in_gb18030(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(
        "身份证号,姓名,性别,出生日期,户籍地代码\n".encode("gb18030")
        + f"{GOOD},王芳,女,1990年03月04日,320412\n".encode("gb18030")
        + b",,,,\n"  # blank rows are skipped
        + f"{GOOD},李娜,女,1990/03/04,320412\n".encode("gb18030")
    )
    assert detect_encoding(path) == "gb18030"
    rows = list(read_roster(path, Mapping.load()))
    assert [line for line, _ in rows] == [2, 4]
    assert rows[0][1] == _row()
    assert rows[1][1]["name"] == "李娜" and rows[1][1]["birth_date"] == "1990-03-04"


def test_a_roster_without_a_required_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("姓名,性别\n王芳,女\n", encoding="utf-8")
    with pytest.raises(RosterError, match="id_number"):
        list(read_roster(path, Mapping.load()))


def test_the_generator_plants_exactly_the_bad_rows_asked_for_in_csv_and_xlsx(tmp_path: Path) -> None:
    for name in ("r.csv", "r.xlsx"):
        info = generate(tmp_path / name, 300, 15, seed=7)
        planted = {line: kind for kind, lines in info["planted"].items() for line in lines}
        assert len(planted) == 15 and {len(v) for v in info["planted"].values()} == {3}
        rows = dict(read_roster(tmp_path / name, Mapping.load()))
        assert len(rows) == 300
        seen: set[str] = set()
        for line, fields in rows.items():
            person, error = validate_row(fields)
            duplicate = person is not None and person["id_number"] in seen
            if person is not None:
                seen.add(person["id_number"])
            if line in planted:
                kind = planted[line]
                assert (error[1] if error else "no-duplicate" if duplicate else None) == EXPECTED_RULE[kind]
            else:
                assert error is None and not duplicate, (line, error)
    assert set(BAD_KINDS) == set(EXPECTED_RULE)
