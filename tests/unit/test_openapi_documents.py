"""Every service's OpenAPI document: bounded inputs, problem+json answers, the bearer scheme.

The documents are built in-process from the same ``create_app`` the services run, so a new
route is checked as soon as it exists; the fuzz test then holds the services to them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.migrant_exchange.entrypoints.app import create_app as exchange_app
from services.registry.entrypoints.app import create_app as registry_app
from services.verification.entrypoints.app import create_app as verification_app
from shared.errors import PROBLEM_JSON

Schema = dict[str, Any]
BOUNDED_FORMATS = {"uuid", "date", "date-time", "time", "duration"}


@pytest.fixture(scope="module")
def documents() -> dict[str, Schema]:
    mp = pytest.MonkeyPatch()
    mp.setenv("JURISDICTIONS", "320412")
    try:
        return {
            "registry": registry_app().openapi(),
            "migrant_exchange": exchange_app().openapi(),
            "verification": verification_app().openapi(),
        }
    finally:
        mp.undo()


def _operations(doc: Schema) -> Iterator[tuple[str, str, Schema]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def _resolve(doc: Schema, schema: Schema) -> Schema:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _unbounded(doc: Schema, schema: Schema, where: str, seen: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every integer or string inside ``schema`` that has no upper bound, by its path."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return
        seen |= {name}
    schema = _resolve(doc, schema)
    for key in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(key, []):
            yield from _unbounded(doc, part, where, seen)
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        return
    low = "minimum" in schema or "exclusiveMinimum" in schema
    high = "maximum" in schema or "exclusiveMaximum" in schema
    if kind == "integer" and not (low and high):
        yield f"{where}: integer without minimum and maximum"
    if kind == "string" and not (
        "maxLength" in schema or "pattern" in schema or schema.get("format") in BOUNDED_FORMATS
    ):
        yield f"{where}: string without maxLength"
    if kind == "array":
        if "maxItems" not in schema:
            yield f"{where}: array without maxItems"
        yield from _unbounded(doc, schema.get("items", {}), f"{where}[]", seen)
    if kind == "object":
        for name, prop in schema.get("properties", {}).items():
            yield from _unbounded(doc, prop, f"{where}.{name}", seen)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in schema:
                yield f"{where}: object without maxProperties"
            yield from _unbounded(doc, extra, f"{where}.*", seen)
        names = schema.get("propertyNames")
        if isinstance(names, dict):
            yield from _unbounded(doc, names, f"{where}.(key)", seen)


def test_every_input_is_bounded(documents: dict[str, Schema]) -> None:
    found = []
    for service, doc in documents.items():
        for method, path, op in _operations(doc):
            where = f"{service} {method} {path}"
            for param in op.get("parameters", []):
                found += _unbounded(doc, param["schema"], f"{where} {param['in']} {param['name']}")
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                found += _unbounded(doc, content["schema"], f"{where} body({media})")
    assert not found, "\n".join(found)


# Operations anyone may call: health, public keys and status lists, the kiosk page.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v1/keys"),
    ("GET", "/v1/status-lists/{issuer}"),
    ("GET", "/kiosk"),
    ("GET", "/asyncapi.json"),  # the published event contracts (shared.contracts_routes)
    ("GET", "/v1/schemas"),
    ("GET", "/v1/schemas/{event_type}"),
}


def test_every_error_answer_is_documented_as_problem_json(documents: dict[str, Schema]) -> None:
    for service, doc in documents.items():
        assert doc["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status"]
        assert "HTTPValidationError" not in doc["components"]["schemas"], service
        for method, path, op in _operations(doc):
            for code, answer in op["responses"].items():
                if int(code) < 400 or (path == "/readyz" and code == "503"):
                    continue
                assert set(answer["content"]) == {PROBLEM_JSON}, (service, method, path, code)
                schema = answer["content"][PROBLEM_JSON]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (service, method, path, code)


def test_protected_operations_name_the_bearer_scheme_and_their_scopes(documents: dict[str, Schema]) -> None:
    for service, doc in documents.items():
        assert doc["components"]["securitySchemes"]["bearer"] == {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "<client_id>.<secret>",
            "description": "a registered client's credential; each operation names the scopes it needs",
        }
        for method, path, op in _operations(doc):
            if (method, path) in PUBLIC:
                assert "security" not in op and "401" not in op["responses"], (service, method, path)
                continue
            assert [set(r) for r in op.get("security", [])] == [{"bearer"}], (service, method, path)
            assert {"401", "403"} <= set(op["responses"]), (service, method, path)
    ops = {(s, m, p): op for s, doc in documents.items() for m, p, op in _operations(doc)}
    scopes = {key: op["security"][0]["bearer"] for key, op in ops.items() if "security" in op}
    assert scopes["registry", "POST", "/v1/persons"] == ["persons:write"]
    assert scopes["migrant_exchange", "POST", "/v1/notifications/{notification_id}/feedback"] == [
        "exchange:feedback"
    ]
    assert scopes["migrant_exchange", "GET", "/v1/dead-letters/{dead_letter_id}"] == ["ops:read"]
    assert scopes["verification", "POST", "/v1/verifications"] == ["verify"]  # authenticates inline
    assert scopes["verification", "GET", "/v1/audit/verify"] == []  # either of two scopes


def test_the_shared_edge_answers_are_on_every_operation_that_can_give_them(
    documents: dict[str, Schema],
) -> None:
    for service, doc in documents.items():
        for method, path, op in _operations(doc):
            codes = set(op["responses"])
            if method == "POST":
                assert {"400", "413", "415", "422"} <= codes, (service, method, path)
            if op.get("parameters") or op.get("requestBody"):
                assert "422" in codes, (service, method, path)
            if path.startswith("/v1/") and path != "/v1/stream" and not path.startswith("/v1/schemas"):
                # every /v1 route reads the database, but the contracts (generated from the code)
                assert "503" in codes, (service, method, path)
    ops = {(s, m, p): set(op["responses"]) for s, doc in documents.items() for m, p, op in _operations(doc)}
    assert "404" in ops["migrant_exchange", "POST", "/v1/notifications/{notification_id}/feedback"]
    assert "404" in ops["migrant_exchange", "GET", "/v1/dead-letters/{dead_letter_id}"]
    assert {"404", "409"} <= ops["migrant_exchange", "POST", "/v1/discrepancies/{discrepancy_id}/resolution"]
    assert "429" in ops["verification", "POST", "/v1/verifications"]
    assert "404" in ops["verification", "GET", "/v1/status-lists/{issuer}"]
