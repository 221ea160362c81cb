"""A move is answered alike by the registry's own handler of plain requests and by FastAPI's
(session stack: real HTTP, PostgreSQL).

``POST /v1/migrations`` with a body of plain ``application/json`` is read by the route's own
handler (``write_kinds._plain_route``); with any other JSON media type, or with anything FastAPI
would judge, by FastAPI's. The same request sent both ways gets the same answer: the same record
(fields in the same order, each event carrying its request's trace), the same refusal naming
the same field and rule, the same 401.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import orjson
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from services.registry.entrypoints.schemas_vital_events import MigrationOut
from tests.helpers import person_id, query

pytestmark = pytest.mark.e2e

PLAIN, OTHER = "application/json", "application/json; charset=utf-8"  # read by ours, by FastAPI's


def _arrival(number: str, date: str = "2025-04-01") -> dict[str, Any]:
    return {
        "kind": "arrived",
        "id_number": number,
        "from_division": ORIGIN,
        "to_division": DESTINATION,
        "migration_date": date,
        "name": "平常",
        "hukou_division": ORIGIN,
    }


def _post(
    stack: Stack, body: dict[str, Any], media_type: str, token: bool = True
) -> tuple[httpx.Response, str]:
    trace = secrets.token_hex(16)
    headers = {"Content-Type": media_type, "traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"}
    if token:
        headers["Authorization"] = f"Bearer {stack.token(f'reg-{DESTINATION}')}"
    answer = httpx.post(
        f"{stack.service(f'registry-{DESTINATION}').url}/v1/migrations",
        content=orjson.dumps(body),
        headers=headers,
        timeout=10,
    )
    return answer, trace


def test_a_move_is_recorded_and_answered_alike_by_either_handler(stack: Stack) -> None:
    answers = {}
    for media_type in (PLAIN, OTHER):
        body = _arrival(person_id("F"))
        answer, trace = _post(stack, body, media_type)
        assert answer.status_code == 201, answer.text
        assert answer.headers["content-type"] == "application/json"
        record = MigrationOut.model_validate_json(answer.content)  # the answer the OpenAPI document names
        moved = ("kind", "id_number", "from_division", "to_division", "migration_date")
        assert {k: answer.json()[k] for k in moved} == {k: body[k] for k in moved}
        assert record.jurisdiction == DESTINATION
        # the move and its event are written, the event carrying this request's trace
        rows = query(
            stack.service(f"registry-{DESTINATION}").dsn,
            """SELECT m.id_number, o.headers->>'traceparent' AS tp FROM migrations m
                 JOIN outbox o ON o.event_id = $2::uuid WHERE m.id = $1::uuid""",
            str(record.migration_id),
            str(record.event_id),
        )
        assert [(r["id_number"], r["tp"].split("-")[1]) for r in rows] == [(body["id_number"], trace)]
        answers[media_type] = answer.json()
    plain, other = answers[PLAIN], answers[OTHER]
    assert list(plain) == list(other)  # the same fields, in the same order
    assert {k: type(v) for k, v in plain.items()} == {k: type(v) for k, v in other.items()}


@pytest.mark.parametrize(
    "change",
    [
        {"migration_date": "2025-13-01"},  # not a date
        {"kind": "wandered"},  # not a kind of move
        {"to_division": "12345"},  # not a division code
        {"id_number": "110101199001011235"},  # a wrong check digit
        {"unknown": 1},  # a field no move has
    ],
)
def test_a_refused_move_names_the_same_field_and_rule_either_way(
    stack: Stack, change: dict[str, Any]
) -> None:
    body = {**_arrival(person_id("M")), **change}
    plain, _ = _post(stack, body, PLAIN)
    other, _ = _post(stack, body, OTHER)
    assert plain.status_code == other.status_code == 422, plain.text
    assert plain.headers["content-type"] == "application/problem+json"
    assert plain.json() == other.json()
    assert plain.json()["errors"], plain.text  # each error names its field and rule


def test_a_move_without_credentials_is_refused_alike(stack: Stack) -> None:
    body = _arrival(person_id("F"))
    plain, _ = _post(stack, body, PLAIN, token=False)
    other, _ = _post(stack, body, OTHER, token=False)
    assert plain.status_code == other.status_code == 401
    assert plain.json() == other.json()
