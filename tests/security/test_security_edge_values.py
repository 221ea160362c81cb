"""The inputs that once reached a 500 (issue 21): 422s naming the field, and nothing written.

Each is sent to the running services against real records, as the fuzzer found them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.inputs import INT64_MAX
from tests.fuzz.seed import seed_records
from tests.helpers import Api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def known(stack: Stack) -> dict[str, list[str]]:
    return seed_records(stack)


def _refused(r: Any, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field, r.text


@pytest.mark.parametrize("dead_letter_id", [INT64_MAX + 1, 10**20, -(2**70)])
def test_a_dead_letter_id_beyond_64_bits_is_422(stack: Stack, dead_letter_id: int) -> None:
    operator = Api(stack, "migrant_exchange", "operator")
    _refused(operator.get(f"/v1/dead-letters/{dead_letter_id}"), "dead_letter_id")
    assert operator.get(f"/v1/dead-letters/{INT64_MAX}").status_code == 404  # in range: looked up


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"outcome": "conflict", "conflicts": [{"field": "name", "ours": 10**20, "theirs": None}]},
            "conflicts.0.ours",
        ),
        (
            {"outcome": "conflict", "conflicts": [{"field": "name", "ours": 1, "theirs": -(2**64)}]},
            "conflicts.0.theirs",
        ),
        ({"outcome": "rejected", "reason": "bad\u0000record"}, "reason"),
        (
            {"outcome": "conflict", "conflicts": [{"field": "name", "ours": "张\u0000丽", "theirs": "x"}]},
            "conflicts.0.ours",
        ),
        ({"outcome": "rejected", "reason": "\ud800"}, "reason"),
    ],
)
def test_feedback_with_unstorable_values_is_422_and_changes_nothing(
    stack: Stack, known: dict[str, list[str]], body: dict[str, Any], field: str
) -> None:
    exchange = Api(stack, "migrant_exchange", f"reg-{DESTINATION}")
    notification = known["notification_id"][0]

    def state() -> dict[str, Any]:
        listed = exchange.get("/v1/notifications", limit=1000).json()
        return next(n for n in listed if n["notification_id"] == notification)

    before = state()
    content = json.dumps(body).encode()  # the stdlib writes lone surrogates as escapes
    r = exchange.http.post(
        f"/v1/notifications/{notification}/feedback",
        content=content,
        headers={"content-type": "application/json"},
    )
    _refused(r, field)
    assert state() == before


def test_nul_in_a_path_or_query_parameter_is_422_naming_it(stack: Stack, known: dict[str, list[str]]) -> None:
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    _refused(origin.http.get("/v1/certificates/320412-2026%00/qr.svg"), "number")
    person = known["id_number"][0]
    _refused(origin.http.get(f"/v1/persons/{person}?purpose=registration%00"), "purpose")
    operator = Api(stack, "migrant_exchange", "operator")
    _refused(operator.http.get("/v1/flows?format=%00"), "format")
