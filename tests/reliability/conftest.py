"""A full stack of the reliability tests' own: faults here never disturb the session stack."""

from __future__ import annotations

from tests.stacks_ahead import StackSpec, stack_fixture

# Stopped once this directory's tests are done. Its tests time recoveries, so no other stack
# starts while they run.
fault_stack = stack_fixture(
    "fault_stack", StackSpec("faults", db_prefix="faults_", ahead=False), scope="package"
)
