"""The stack of the agreement and REST-only tests, stopped once they are done."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import EmbeddedPostgres
from devstack.stack import Stack
from tests.conftest import running_stack
from tests.e2e.agreements.agreements_kit import AGREEMENTS, write_agreements


@pytest.fixture(scope="package")
def agreements_stack(workdir: Path, pg: EmbeddedPostgres) -> Iterator[Stack]:
    """Registries 320412 and 440703, the REST-only 110101, under the agreements of ``agreements_kit``."""
    path = write_agreements(workdir / "agreements-stack.yaml", AGREEMENTS)
    with running_stack(
        workdir,
        pg,
        "agreements-stack",
        db_prefix="agr_",
        extra_env={"AGREEMENTS_FILE": str(path), "OVERDUE_SWEEP_INTERVAL": "0.3"},
    ) as s:
        yield s
