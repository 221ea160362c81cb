"""Schemathesis against each service's OpenAPI document: no 5xx, every answer documented.

Every response is checked for its status code, content type and schema against the document
(schemathesis' conformance checks), and every 4xx/5xx for RFC 9457 problem+json. Each
operation is called as a client holding the scopes its document names, so requests get past
authentication to the handlers; path parameters are, half of the time, ids of records seeded
first (a notification, a certificate, a person...), so handlers also see fuzzed bodies
against real rows.

Examples per operation and generation mode come from ``FUZZ_EXAMPLES`` (small in ``make
test``, 500 in ``make fuzz``). Operations are read from the live documents, so new endpoints
are fuzzed as soon as they exist.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.credentials import EXCHANGE_SERVICE
from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.fuzz.seed import seed_records

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
ONLY = re.compile(os.environ.get("FUZZ_ONLY", ""))  # e.g. FUZZ_ONLY=feedback while chasing one failure
# The clients each service is fuzzed as, in order of preference: the first holding every scope
# an operation's security requirement names is used.
CLIENTS = {
    f"registry-{ORIGIN}": [f"reg-{ORIGIN}", EXCHANGE_SERVICE],  # the exchange's: the internal routes
    "migrant_exchange": [f"reg-{DESTINATION}", "operator"],
    "verification": [f"kiosk-{DESTINATION}", "operator"],
}
SKIP = {("GET", "/v1/stream")}  # a server-sent event stream never ends; covered by its own tests
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

ERRORS_CHECKED: list[int] = []
CASES: list[str] = []


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
    for service in CLIENTS:
        schema = schemathesis.openapi.from_url(stack.service(service).url + "/openapi.json")
        for result in schema.get_all_operations():
            op = result.ok()
            if (op.method.upper(), op.path) not in SKIP and ONLY.search(f"{op.method.upper()} {op.path}"):
                found.append((service, op))
    return found


def _describe(e: BaseException) -> str:
    """The failure and, for hypothesis' flaky and grouped failures, what each attempt saw."""
    parts = [f"{type(e).__name__}: {e}"]
    for sub in getattr(e, "exceptions", ()):
        parts.append(_describe(sub))
    return "\n  ".join(parts)


def _client_for(stack: Stack, service: str, op: Any) -> str:
    """The first of the service's clients holding every scope the operation's document names."""
    needed = {
        scope
        for requirement in op.definition.raw.get("security", [])
        for s in requirement.values()
        for scope in s
    }
    scopes = {c["client_id"]: set(c["scopes"]) for c in stack.clients}
    return next((c for c in CLIENTS[service] if needed <= scopes[c]), CLIENTS[service][0])


def _with_known_ids(strategy: Any, known: dict[str, list[str]]) -> Any:
    """Half of the cases name a seeded record in the path, so the handler meets a real row."""

    def swap(case: Any, use: bool, pick: int) -> Any:
        if use and case.path_parameters:
            for name in list(case.path_parameters):
                if known.get(name):
                    case.path_parameters[name] = known[name][pick % len(known[name])]
        return case

    return st.tuples(strategy, st.booleans(), st.integers(0, 7)).map(lambda t: swap(*t))


def _fuzz(
    op: Any, mode: GenerationMode, base_url: str, headers: dict[str, str], known: dict[str, list[str]]
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=EXAMPLES < 50,  # the bounded run in `make test` is the same every time
    )
    @given(case=_with_known_ids(op.as_strategy(generation_mode=mode), known))
    def run(case: Any) -> None:
        CASES.append(op.label)
        case.call_and_validate(
            base_url=base_url, headers=headers, checks=CHECKS, additional_checks=[problem_json], timeout=30
        )

    run()


@pytest.fixture(scope="module")
def known_ids(stack: Stack) -> dict[str, list[str]]:
    return seed_records(stack)


# pytest-timeout's default (300 s) would fire inside a hypothesis run, which reports it as a
# flaky failure of whatever operation was running: the budget grows with the examples instead.
@pytest.mark.timeout(300 + 25 * EXAMPLES)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_fuzz_every_operation(stack: Stack, known_ids: dict[str, list[str]], mode: GenerationMode) -> None:
    failures: list[str] = []
    ERRORS_CHECKED.clear()
    CASES.clear()
    operations = _operations(stack)
    assert operations
    for service, op in operations:
        headers = {"Authorization": f"Bearer {stack.token(_client_for(stack, service, op))}"}
        try:
            _fuzz(op, mode, stack.service(service).url, headers, known_ids)
        except Unsatisfiable:
            continue  # nothing to negate: an operation without parameters or body
        except Exception as e:  # collect all operations' failures, then report them together
            failures.append(f"{service} {op.method.upper()} {op.path}: {_describe(e)[:3000]}")
    print(
        f"\nfuzz {mode.value}: {len(operations)} operations, {len(CASES)} cases, "
        f"{len(failures)} failing operations, error answers checked: {len(ERRORS_CHECKED)}"
    )
    assert not failures, "\n\n".join(failures)
    if mode is GenerationMode.NEGATIVE:
        assert ERRORS_CHECKED, "no error answer was ever checked: the problem+json check is not wired"
