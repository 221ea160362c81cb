"""Values PostgreSQL or orjson cannot take are refused at the edge with a 422 naming the field.

The middleware and the error edge are exercised in a small app of their own (no database):
the same ``RequestLimitsMiddleware`` and ``install_error_handlers`` every service installs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.errors import install_error_handlers
from shared.events.payloads import FieldConflict, RecordCorrectedV1
from shared.inputs import (
    INT64_MAX,
    INT64_MIN,
    NUL_RULE,
    SURROGATE_RULE,
    Int64,
    RowId,
    unstorable_in_json,
    unstorable_in_query,
)
from shared.limits import RequestLimitsMiddleware


class Echo(BaseModel):
    name: str | None = None
    items: list[dict[str, Any]] = []


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestLimitsMiddleware)

    @app.post("/echo")
    async def echo(body: Echo) -> dict[str, Any]:
        return body.model_dump()

    things = APIRouter(prefix="/things")  # as the services include theirs

    @things.get("/{thing_id}/parts/{part}")
    async def thing(thing_id: RowId, part: str, q: str | None = None) -> dict[str, Any]:
        return {"thing_id": thing_id, "part": part, "q": q}

    app.include_router(things)

    @app.get("/fail/{kind}")
    async def fail(kind: str) -> None:
        raise {
            "repertoire": asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"),
            "int64": asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
            "limit": asyncpg.ProgramLimitExceededError("index row size exceeds maximum"),
            "deadlock": asyncpg.DeadlockDetectedError("deadlock detected"),
            "serialization": asyncpg.SerializationError("could not serialize access"),
            "lock-timeout": asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
            "bug": RuntimeError("a bug of ours"),
        }[kind]

    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(_app(), raise_server_exceptions=False) as c:
        yield c


def _refused(r: Any, field: str, rule: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 422
    assert body["errors"][0]["field"] == field and body["errors"][0]["rule"] == rule, body


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        (b'{"name": "a\\u0000b"}', "name", NUL_RULE),
        (b'{"items": [{"x": 1}, {"deep": ["ok", "\\u0000"]}]}', "items.1.deep.1", NUL_RULE),
        (b'{"items": [{"k\\u0000ey": 1}]}', "items.0.(key)", NUL_RULE),
        (b'{"name": "\\ud800"}', "name", SURROGATE_RULE),
        (b'{"name": "x\\uDFFFy"}', "name", SURROGATE_RULE),
    ],
)
def test_unstorable_text_in_a_body_is_422_naming_the_field(
    client: TestClient, body: bytes, field: str, rule: str
) -> None:
    _refused(client.post("/echo", content=body, headers={"content-type": "application/json"}), field, rule)


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "\\\\u0000 is how JSON writes NUL"}',  # an escaped backslash, then plain text
        b'{"name": "\\ud83d\\ude00 a pair is one character"}',
        '{"name": "张丽"}'.encode(),
    ],
)
def test_storable_text_passes(client: TestClient, body: bytes) -> None:
    r = client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == orjson.loads(body)["name"]


def test_unstorable_query_and_path_parameters_are_named(client: TestClient) -> None:
    _refused(client.get("/things/1/parts/wheel?q=a%00b"), "q", NUL_RULE)
    _refused(client.get("/things/1/parts/wh%00eel"), "part", NUL_RULE)
    assert client.get("/things/1/parts/wheel?q=%E4%B8%AD").json() == {
        "thing_id": 1,
        "part": "wheel",
        "q": "中",
    }


def test_row_ids_beyond_64_bits_are_422_naming_the_parameter(client: TestClient) -> None:
    r = client.get(f"/things/{INT64_MAX + 1}/parts/wheel")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "thing_id", r.text
    assert client.get(f"/things/{INT64_MAX}/parts/wheel").json()["thing_id"] == INT64_MAX
    assert client.get("/things/0/parts/wheel").status_code == 422


@pytest.mark.parametrize("kind", ["repertoire", "int64", "limit"])
def test_values_the_database_refuses_are_422_not_500(client: TestClient, kind: str) -> None:
    r = client.get(f"/fail/{kind}")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["rule"] == "storable-value"


@pytest.mark.parametrize("kind", ["deadlock", "serialization", "lock-timeout"])
def test_a_transaction_lost_to_another_is_a_503_to_retry_not_a_500(client: TestClient, kind: str) -> None:
    r = client.get(f"/fail/{kind}")
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"] == "1" and "Idempotency-Key" in r.json()["detail"]


def test_our_own_bugs_still_are_500(client: TestClient) -> None:
    r = client.get("/fail/bug")
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/problem+json")


def test_int64_is_exactly_the_signed_64_bit_range() -> None:
    adapter = TypeAdapter(Int64)
    assert adapter.validate_python(INT64_MIN) == INT64_MIN and adapter.validate_python(INT64_MAX) == INT64_MAX
    for outside in (INT64_MIN - 1, INT64_MAX + 1, 10**30):
        with pytest.raises(ValidationError):
            adapter.validate_python(outside)
    with pytest.raises(ValidationError):
        adapter.validate_json(b"1e30")  # an integral float is coerced to int, then bounded


def test_conflicts_and_corrections_carry_only_what_orjson_writes() -> None:
    with pytest.raises(ValidationError) as e:
        FieldConflict(field="name", ours=2**64, theirs=None)
    assert e.value.errors()[0]["loc"] == ("ours",)  # the field itself, not a member of its union
    conflict = FieldConflict(field="birth_order", ours=INT64_MAX, theirs="张丽")
    assert orjson.loads(orjson.dumps(conflict.model_dump())) == conflict.model_dump()
    with pytest.raises(ValidationError):
        FieldConflict(field="x" * 65, ours=1, theirs=2)
    with pytest.raises(ValidationError):
        RecordCorrectedV1.model_validate(
            {
                "correction_id": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                "corrected_event_id": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                "record_type": "birth",
                "record_id": "x",
                "changes": {"birth_order": -(2**70)},
                "reason": "typo",
            }
        )


def test_scans_only_parse_suspect_input() -> None:
    assert unstorable_in_json(b"not json \\u0000") is None  # left to the route's own parser
    assert unstorable_in_query(b"a=1&b=%01") is None
    assert unstorable_in_query(b"a=1&b%00=2") == ("b\x00", NUL_RULE)
