"""Sample legacy rosters for the import tests and benchmark: generated, never committed.

A county office's roster as a spreadsheet export: Chinese column headings, 男/女, dates as
YYYY-MM-DD. Identity numbers come from Faker's ``zh_CN`` provider; it sometimes makes numbers
whose birth-place code did not exist in the birth year, which python-stdnum rightly rejects, so
the generator retries until each good row is valid. It also plants exactly ``bad`` rows of
several kinds and says on which lines, so a test can check the rejects file line by line.

    python -m devstack.roster_fixture roster.csv --rows 100000 --bad 200 [--encoding gb18030]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

from faker import Faker
from stdnum.cn import ric

from shared.identity import check_id_number

HEADER = ["公民身份号码", "姓名", "性别", "出生日期", "户籍地行政区划代码", "现居住地行政区划代码"]
BAD_KINDS = ("bad_check_digit", "unknown_division", "future_birth_date", "missing_name", "duplicate")
# The rule each kind breaks, as the import names it in the rejects file.
EXPECTED_RULE = {
    "bad_check_digit": "gb11643-check-digit",
    "unknown_division": "gb2260-known-division",
    "future_birth_date": "not-in-future",
    "missing_name": "missing",
    "duplicate": "no-duplicate",
}
UNKNOWN_DIVISION = "329999"


class _People:
    """Valid, distinct people from Faker zh_CN."""

    def __init__(self, seed: int):
        self.faker = Faker("zh_CN")
        self.faker.seed_instance(seed)
        self.seen: set[str] = set()

    def number(self) -> str:
        while True:
            candidate = self.faker.ssn()
            if candidate in self.seen:
                continue
            try:
                check_id_number(candidate)  # the registry's own check: stdnum plus "not born in the future"
            except ValueError:
                continue
            self.seen.add(candidate)
            return candidate

    def row(self, hukou: str, residence: str) -> list[str]:
        number = self.number()
        sex = "男" if int(number[16]) % 2 else "女"
        name = self.faker.name_male() if sex == "男" else self.faker.name_female()
        return [number, name, sex, ric.get_birth_date(number).isoformat(), hukou, residence]


def _spoil(kind: str, good: list[str], earlier: list[str]) -> list[str]:
    row = list(good)
    if kind == "bad_check_digit":
        check = row[0][-1]
        row[0] = row[0][:-1] + ("0" if check != "0" else "1")
    elif kind == "unknown_division":
        row[4] = UNKNOWN_DIVISION
    elif kind == "future_birth_date":
        row[3] = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    elif kind == "missing_name":
        row[1] = ""
    elif kind == "duplicate":
        row = list(earlier)
    return row


def generate(
    path: Path,
    rows: int,
    bad: int,
    *,
    jurisdiction: str = "320412",
    elsewhere: str = "440703",
    migrant_share: float = 0.0,
    encoding: str = "utf-8",
    seed: int = 20260101,
) -> dict[str, Any]:
    """Write a roster of ``rows`` data rows, ``bad`` of them planted; returns where the bad ones are.

    Bad rows are spread evenly through the file (never on the first data row, so a duplicate always
    has an earlier original), kinds in turn. ``migrant_share`` of the good rows live ``elsewhere``.
    """
    if not 0 <= bad < rows:
        raise ValueError("bad must be at least 0 and fewer than rows")
    rnd = random.Random(seed)
    people = _People(seed)
    step = rows / bad if bad else 0
    bad_at = {int(1 + i * step + rnd.random() * (step - 1)) for i in range(bad)} if bad else set()
    bad_at.discard(0)
    while len(bad_at) < bad:  # collisions of the rounding: fill from the end
        bad_at.add(rows - 1 - len(bad_at))
    planted: dict[str, list[int]] = {k: [] for k in BAD_KINDS}
    data: list[list[str]] = []
    for i in range(rows):
        residence = elsewhere if rnd.random() < migrant_share else jurisdiction
        good = people.row(jurisdiction, residence)
        if i in bad_at:
            kind = BAD_KINDS[sum(len(v) for v in planted.values()) % len(BAD_KINDS)]
            earlier = next(r for r in reversed(data) if _is_good(r))
            data.append(_spoil(kind, good, earlier))
            planted[kind].append(i + 2)  # line numbers: the heading is line 1
        else:
            data.append(good)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".xlsx":
        _write_xlsx(path, data)
    else:
        with path.open("w", encoding=encoding, newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            writer.writerows(data)
    return {"path": str(path), "rows": rows, "bad": bad, "planted": planted}


def _is_good(row: list[str]) -> bool:
    try:
        check_id_number(row[0])
    except ValueError:
        return False
    return bool(row[1]) and row[4] != UNKNOWN_DIVISION and row[3] <= dt.date.today().isoformat()


def _write_xlsx(path: Path, data: list[list[str]]) -> None:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("花名册")
    sheet.append(HEADER)
    for row in data:
        sheet.append(row)
    book.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a sample legacy roster with planted bad rows.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bad", type=int, default=200)
    parser.add_argument("--jurisdiction", default="320412")
    parser.add_argument("--encoding", default="utf-8", choices=["utf-8", "gb18030"])
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args()
    info = generate(
        args.path, args.rows, args.bad, jurisdiction=args.jurisdiction, encoding=args.encoding, seed=args.seed
    )
    print(
        json.dumps({k: v if k != "planted" else {x: len(y) for x, y in v.items()} for k, v in info.items()})
    )


if __name__ == "__main__":
    main()
