"""A full stack of the reliability tests' own: faults here never disturb the session stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import EmbeddedPostgres
from devstack.stack import Stack
from tests.conftest import _keep_logs


@pytest.fixture(scope="session")
def fault_stack(workdir: Path, pg: EmbeddedPostgres) -> Iterator[Stack]:
    s = Stack(workdir / "faults", pg=pg, db_prefix="faults_")
    try:
        s.start()
        yield s
    finally:
        s.stop()
        _keep_logs(s, "faults")
