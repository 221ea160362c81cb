"""The README's walk-through, run as a newcomer would paste it: the shell block itself, with curl
and jq, against a stack of its own whose ``.run/stack.json`` the block reads (the trust list and
keys made by the stack itself, as ``make run`` makes them)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from devstack.stack import Stack
from tests.stacks_ahead import StackSpec, stack_fixture

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "README.md"


walk_stack = stack_fixture("walk_stack", StackSpec("walkthrough", db_prefix="walk_"))


def _walkthrough(block: int = 0) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A walk-through") :]
    found = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(found) > block, "the README's walk-through has no such shell block"
    return str(found[block])


def _run(stack: Stack, where: Path, script: str) -> str:
    """Run a shell block as pasted in a checkout whose ``.run/stack.json`` is the stack's; its output."""
    (where / ".run").mkdir()
    (where / ".run" / "stack.json").symlink_to(stack.run_dir / "stack.json")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=where, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_the_readme_walkthrough_works_as_written(walk_stack: Stack, tmp_path: Path) -> None:
    out = _run(walk_stack, tmp_path, _walkthrough())
    assert '"source_division": "440703"' in out  # the birth reached the origin's own records
    verdict = json.loads(out.strip().splitlines()[-1])
    assert verdict["result"] == "valid" and verdict["attributes"]["children_count"] == 1
    states = re.findall(r'"state": "(\w+)"', out)  # the last feedback may still be on its way
    assert "applied" in states and set(states) <= {"applied", "pending"}, states
    # a write the walk-through makes is answered, not refused: no problem+json anywhere
    assert "urn:migrant-exchange:problem" not in out, out


def test_the_readme_rest_only_walkthrough_works_as_written(walk_stack: Stack, tmp_path: Path) -> None:
    """The second block: 110101, not on Kafka, collects and answers its notification over REST
    (run after the first block's settings: the stack file, the URLs, ``tok``)."""
    settings = _walkthrough().split("\n\n")[0]
    out = _run(walk_stack, tmp_path, settings + "\n" + _walkthrough(1))
    assert '"event_type": "migration.departed.v1"' in out and '"to_division": "110101"' in out
    closed = json.loads(out[out.rindex("{") :])
    assert closed == {"event_type": "migration.departed.v1", "target_division": "110101", "state": "applied"}
    assert "urn:migrant-exchange:problem" not in out, out
