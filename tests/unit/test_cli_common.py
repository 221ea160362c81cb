"""Where exchangectl finds databases: the stack's description, or --db SERVICE=URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.common import StackInfo
from cli.main import app


def test_databases_named_on_the_command_line_stand_in_for_a_stack(tmp_path: Path) -> None:
    info = StackInfo(
        tmp_path / "none.json", ["registry-440703=postgresql:///r", "verification=postgresql:///v"]
    )
    assert info.registry_dsn("440703") == "postgresql:///r"
    assert info.dsn("verification") == "postgresql:///v"
    with pytest.raises(typer.Exit):
        info.registry_dsn("320412")
    with pytest.raises(typer.BadParameter):
        StackInfo(None, ["verification"])


def test_the_stack_description_gives_databases_services_and_the_operator(tmp_path: Path) -> None:
    stack = tmp_path / "stack.json"
    stack.write_text(
        json.dumps(
            {
                "services": {"registry-320412": {"url": "http://r", "jurisdictions": ["320412"]}},
                "databases": {"registry-320412": "postgresql:///o"},
                "clients": [{"client_id": "operator", "kind": "operator", "token": "operator.s"}],
            }
        )
    )
    info = StackInfo(stack, ["registry-320412=postgresql:///override"])
    assert info.registry_dsn("320412") == "postgresql:///override"
    assert info.url("registry-320412") == "http://r" and info.token() == "operator.s"


def test_an_unknown_jurisdiction_is_refused_before_anything_runs(tmp_path: Path) -> None:
    roster = tmp_path / "r.csv"
    roster.write_text("姓名\n王芳\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import", str(roster), "-j", "999999", "--dsn", "postgresql:///none"])
    assert result.exit_code == 2 and "unknown division code" in result.output
