"""A full stack of the reliability tests' own: faults here never disturb the session stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import EmbeddedPostgres
from devstack.stack import Stack
from tests.conftest import running_stack


@pytest.fixture(scope="package")  # stopped once this directory's tests are done
def fault_stack(workdir: Path, pg: EmbeddedPostgres) -> Iterator[Stack]:
    with running_stack(workdir, pg, "faults", db_prefix="faults_") as s:
        yield s
