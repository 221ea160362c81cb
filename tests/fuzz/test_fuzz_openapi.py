"""Schemathesis against each service's OpenAPI document: no 5xx, every error is problem+json,
every documented answer matches its schema.

Examples per operation and generation mode come from ``FUZZ_EXAMPLES`` (small in ``make
test``, 500 in ``make fuzz``). Operations are read from the live documents, so new endpoints
are fuzzed as soon as they exist.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from devstack.stack import DESTINATION, ORIGIN, Stack

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
# Each service fuzzed as the client that may use most of it.
TARGETS = {
    f"registry-{ORIGIN}": f"reg-{ORIGIN}",
    "migrant_exchange": f"reg-{DESTINATION}",
    "verification": f"kiosk-{DESTINATION}",
}
SKIP = {("GET", "/v1/stream")}  # a server-sent event stream never ends; covered by its own tests


ERRORS_CHECKED: list[int] = []


def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is RFC 9457 problem+json whose status matches the HTTP status."""
    if response.status_code < 400:
        return None
    ERRORS_CHECKED.append(response.status_code)
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/problem+json"), (
        f"{case.method} {case.path} answered {response.status_code} as {content_type!r}"
    )
    body = response.json()
    assert body.get("status") == response.status_code and body.get("title"), body
    return True


def _operations(stack: Stack) -> list[tuple[str, Any]]:
    found = []
    for service in TARGETS:
        schema = schemathesis.openapi.from_url(stack.service(service).url + "/openapi.json")
        for result in schema.get_all_operations():
            op = result.ok()
            if (op.method.upper(), op.path) not in SKIP:
                found.append((service, op))
    return found


def _fuzz(op: Any, mode: GenerationMode, base_url: str, headers: dict[str, str]) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=EXAMPLES < 50,  # the bounded run in `make test` is the same every time
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=base_url,
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance],
            additional_checks=[problem_json],
            timeout=30,
        )

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_fuzz_every_operation(stack: Stack, mode: GenerationMode) -> None:
    failures: list[str] = []
    ERRORS_CHECKED.clear()
    operations = _operations(stack)
    assert operations
    for service, op in operations:
        headers = {"Authorization": f"Bearer {stack.token(TARGETS[service])}"}
        try:
            _fuzz(op, mode, stack.service(service).url, headers)
        except Unsatisfiable:
            continue  # nothing to negate: an operation without parameters or body
        except Exception as e:  # collect all operations' failures, then report them together
            failures.append(f"{service} {op.method.upper()} {op.path}: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures)
    if mode is GenerationMode.NEGATIVE:
        assert ERRORS_CHECKED, "no error answer was ever checked: the problem+json check is not wired"
    print(f"\nfuzz {mode.value}: {len(operations)} operations, error answers checked: {len(ERRORS_CHECKED)}")
