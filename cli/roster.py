"""Reading legacy rosters: CSV or XLSX, UTF-8 or GB18030, columns mapped by a small YAML file.

A roster yields ``(line, fields)`` pairs: ``line`` is the line (CSV) or row (XLSX) number the
operator sees in the file, ``fields`` the registry's person fields as strings, ready for the
same pydantic model the registry API validates with. Empty cells are left out, so a missing
value is reported as "missing" rather than as a malformed one.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cli import import_messages as say

MAPPINGS_DIR = Path(__file__).parent / "mappings"
DEFAULT_MAPPING = MAPPINGS_DIR / "county.yaml"
REQUIRED = ("id_number", "name", "sex", "birth_date", "hukou_division")
DATE_FIELDS = ("birth_date",)
ENCODINGS = ("auto", "utf-8", "gb18030")


class RosterError(ValueError):
    """The roster as a whole cannot be read (unknown format, missing columns, undecodable)."""


@dataclass(frozen=True)
class Mapping:
    """Column headings and value spellings of one office's rosters."""

    name: str
    columns: dict[str, list[str]]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    date_formats: list[str] = field(default_factory=lambda: ["%Y-%m-%d"])
    defaults: dict[str, str] = field(default_factory=dict)
    path: Path | None = None  # the file it was read from, for the clerk's messages

    @classmethod
    def load(cls, path: Path | None = None) -> Mapping:
        path = path or DEFAULT_MAPPING
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(doc.get("columns"), dict):
            raise RosterError(say.bad_mapping(path))
        return cls(
            path=path,
            name=str(doc.get("name") or path.stem),
            columns={
                k: [str(a) for a in (v if isinstance(v, list) else [v])] for k, v in doc["columns"].items()
            },
            values={k: {str(a): str(b) for a, b in v.items()} for k, v in (doc.get("values") or {}).items()},
            date_formats=[str(f) for f in doc.get("date_formats") or ["%Y-%m-%d"]],
            defaults={k: str(v) for k, v in (doc.get("defaults") or {}).items() if v is not None},
        )

    def locate(self, header: list[str]) -> dict[str, int]:
        """Which column holds each field; a required field without a column or default is an error."""
        cleaned = [h.strip().lstrip("\ufeff") for h in header]
        found: dict[str, int] = {}
        for name, aliases in self.columns.items():
            for alias in aliases:
                if alias in cleaned:
                    found[name] = cleaned.index(alias)
                    break
        missing = [f for f in REQUIRED if f not in found and f not in self.defaults]
        if missing:
            raise RosterError(say.missing_columns(missing, self.columns, cleaned, self.name, self.path))
        return found

    def convert(self, cells: list[str], where: dict[str, int]) -> dict[str, str]:
        """One row as person fields; values the mapping cannot translate are passed on unchanged."""
        out = dict(self.defaults)
        for name, index in where.items():
            value = cells[index].strip() if index < len(cells) else ""
            if not value:
                out.pop(name, None)
                continue
            if name in self.values:
                value = self.values[name].get(value, value)
            if name in DATE_FIELDS:
                value = self._date(value)
            out[name] = value
        return out

    def _date(self, value: str) -> str:
        if len(value) == 10 and value[4] == value[7] == "-":  # ISO already: strptime costs ~10 µs a row
            return value
        for fmt in self.date_formats:
            try:
                return dt.datetime.strptime(value, fmt).date().isoformat()
            except ValueError:
                continue
        return value  # the model names the rule it breaks


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) if the start of the file decodes as UTF-8, else GB18030."""
    head = path.read_bytes()[: 1 << 16]
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8-sig"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_cells(path: Path, encoding: str = "auto") -> Generator[tuple[int, list[str]], None, None]:
    """Every row with its line number, the heading row first (line 1)."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            for number, row in enumerate(book.worksheets[0].iter_rows(values_only=True), start=1):
                yield number, [_cell(v) for v in row]
        finally:
            book.close()
        return
    if suffix not in (".csv", ".txt"):
        raise RosterError(say.unknown_format(suffix))
    enc = detect_encoding(path) if encoding == "auto" else ("utf-8-sig" if encoding == "utf-8" else encoding)
    try:
        with path.open(encoding=enc, newline="") as f:
            reader = csv.reader(f)
            start = 1  # a quoted cell may hold line breaks: a row is numbered by its first line
            for cells in reader:
                yield start, cells
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise RosterError(say.undecodable(enc, e.start)) from None


def read_roster(path: Path, mapping: Mapping, encoding: str = "auto") -> Iterator[tuple[int, dict[str, str]]]:
    """The roster's data rows as person fields; blank rows are skipped."""
    rows = read_cells(path, encoding)
    try:
        _, header = next(rows)
    except StopIteration:
        raise RosterError(say.empty_roster()) from None
    where = mapping.locate(header)
    for line, cells in rows:
        if any(c.strip() for c in cells):
            yield line, mapping.convert(cells, where)


def check_headings(path: Path, mapping: Mapping, encoding: str = "auto") -> None:
    """Refuse a roster that cannot be read or lacks a column, before any database work."""
    rows = read_cells(path, encoding)
    try:
        _, header = next(rows)
    except StopIteration:
        raise RosterError(say.empty_roster()) from None
    finally:
        rows.close()
    mapping.locate(header)


def count_lines(path: Path) -> int:
    """A cheap estimate of the data rows, for the progress bar."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True)
        try:
            return max(0, (book.worksheets[0].max_row or 1) - 1)
        finally:
            book.close()
    with path.open("rb") as f:
        return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1)
