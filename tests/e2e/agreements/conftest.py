"""The stack of the agreement and REST-only tests, stopped once they are done."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.agreements.agreements_kit import AGREEMENTS, write_agreements
from tests.stacks_ahead import StackSpec, stack_fixture


def _agreements(workdir: Path) -> dict[str, str]:
    return {"AGREEMENTS_FILE": str(write_agreements(workdir / "agreements-stack.yaml", AGREEMENTS))}


# Registries 320412 and 440703, the REST-only 110101, under the agreements of ``agreements_kit``.
agreements_stack = stack_fixture(
    "agreements_stack",
    StackSpec(
        "agreements-stack", db_prefix="agr_", extra_env={"OVERDUE_SWEEP_INTERVAL": "0.3"}, files=_agreements
    ),
    scope="package",
)
