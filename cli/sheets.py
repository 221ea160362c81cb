"""The CSV and XLSX files exchangectl writes: every cell is data, never a formula.

Each text cell passes through ``shared.text.spreadsheet_cell`` (OWASP's leading apostrophe for
text that begins like a formula). XLSX cells are written as strings, never as formulas: openpyxl
would otherwise store any text beginning with ``=`` as a formula to run.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from shared.text import spreadsheet_cell

Row = Sequence[Any]


class SafeCsvWriter:
    """``csv.writer`` with every cell escaped."""

    def __init__(self, f: TextIO):
        self._writer = csv.writer(f)

    def writerow(self, row: Row) -> None:
        self._writer.writerow([spreadsheet_cell(v) for v in row])

    def writerows(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.writerow(row)


def write_table(path: Path, header: Row, rows: Iterable[Row], *, sheet: str = "Sheet1") -> None:
    """A table as CSV (UTF-8) or, when the name ends in ``.xlsx``, as a workbook of one sheet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".xlsx":
        _write_xlsx(path, header, rows, sheet)
        return
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = SafeCsvWriter(f)
        writer.writerow(header)
        writer.writerows(rows)


def _write_xlsx(path: Path, header: Row, rows: Iterable[Row], sheet: str) -> None:
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    book = openpyxl.Workbook(write_only=True)
    ws = book.create_sheet(sheet)

    def cells(row: Row) -> list[Any]:
        out: list[Any] = []
        for value in row:
            if not isinstance(value, str):
                out.append(value)
                continue
            cell = WriteOnlyCell(ws, value=spreadsheet_cell(value))
            cell.data_type = "s"  # text, whatever it begins with
            out.append(cell)
        return out

    ws.append(cells(header))
    for row in rows:
        ws.append(cells(row))
    book.save(path)
