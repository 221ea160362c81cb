"""Every exchangectl command explains itself with --help."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ([], "import rosters, replay projections"),
        (["import"], "legacy roster"),
        (["replay"], "Rebuild a projection"),
        (["reconcile"], "reconciliation"),
        (["keys"], "signing keys"),
        (["keys", "list"], "published keys"),
        (["keys", "create"], "first signing key"),
        (["keys", "rotate"], "overlap period"),
        (["audit"], "audit hash chains"),
        (["audit", "verify"], "hash chain"),
        (["audit", "export"], "disclosure history"),
        (["dlq"], "dead letters"),
        (["dlq", "list"], "dead letters not yet replayed"),
        (["dlq", "show"], "one dead letter"),
        (["dlq", "replay"], "Apply dead letters again"),
    ],
)
def test_help_says_what_the_command_does(command: list[str], says: str) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert says in " ".join(result.output.split())
