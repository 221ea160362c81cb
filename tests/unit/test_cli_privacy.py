"""What exchangectl prints and writes of a person (each test failed when a review found the gap).

* A roster exported without its heading row is refused without echoing its first data row as
  "the headings" (a raw identity number and a name on the clerk's terminal); the refusal asks
  whether the heading row is missing.
* ``audit export -o FILE`` writes a named person's disclosure history (who read her pregnancy
  record, for maternal care) owner-only (0600) whatever the umask, as every other file the tools
  write with secrets or personal data.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import audit_cmd
from cli.main import app
from cli.roster import Mapping, RosterError, check_headings
from shared.identity import compose_id_number

GOOD = compose_id_number("110101", dt.date(1990, 3, 4), 7, "F")


def test_a_roster_without_its_heading_row_is_refused_without_echoing_the_first_person(tmp_path: Path) -> None:
    path = tmp_path / "no-header.csv"
    path.write_text(
        f"{GOOD},王芳,女,1990-03-04,320412\n{GOOD[:-2]}11,李娜,女,1990-03-04,320412\n", encoding="utf-8"
    )
    with pytest.raises(RosterError) as refused:
        check_headings(path, Mapping.load())
    message = str(refused.value)
    assert GOOD not in message, "the refusal prints a raw identity number"
    assert "王芳" not in message, "the refusal prints a person's name"


ENTRIES = [
    {
        "service": "registry-320412",
        "seq": 7,
        "at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        "client_id": "reg-440703",
        "action": "pregnancy.read",
        "purpose": "maternal_care",
        "detail": {"jurisdiction": "320412"},
    }
]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_audit_export_to_a_file_is_owner_only(tmp_path: Path, monkeypatch: Any, fmt: str) -> None:
    async def fake_export(targets: dict[str, str], subject: str) -> list[dict[str, Any]]:
        return ENTRIES

    monkeypatch.setattr(audit_cmd, "_export", fake_export)
    monkeypatch.setattr(audit_cmd, "_targets", lambda *a: {"registry-320412": "postgresql://unused"})
    target = tmp_path / f"history.{fmt}"
    old = os.umask(0o022)  # the usual umask of an operator's shell
    try:
        result = CliRunner().invoke(
            app, ["audit", "export", "--id-number", GOOD, "--format", fmt, "-o", str(target)]
        )
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert "pregnancy.read" in target.read_text(encoding="utf-8")
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode & 0o077 == 0, f"a person's disclosure history written with mode {oct(mode)}"
