"""Each batch kind stands for its single route: the same body and answer schemas, status and scope.

Read from the registry's OpenAPI document (built in-process), so a single route that changes
its schema or scope fails here until the batch kind follows it.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.registry.entrypoints.app import create_app
from services.registry.entrypoints.schemas_batches import MAX_ITEMS
from services.registry.entrypoints.write_kinds import KINDS


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    mp = pytest.MonkeyPatch()
    mp.setenv("JURISDICTIONS", "320412")
    try:
        return create_app().openapi()
    finally:
        mp.undo()


def _ref(content: dict[str, Any]) -> str:
    return str(content["schema"]["$ref"]).rsplit("/", 1)[-1]


@pytest.mark.parametrize("name", list(KINDS))
def test_a_batch_kind_is_its_single_route(document: dict[str, Any], name: str) -> None:
    kind = KINDS[name]
    op = document["paths"][kind.route]["post"]
    assert _ref(op["requestBody"]["content"]["application/json"]) == kind.body.__name__
    assert _ref(op["responses"][str(kind.status)]["content"]["application/json"]) == kind.answer.__name__
    assert op["security"] == [{"bearer": [kind.scope]}]
    path_parameters = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
    assert path_parameters == ([kind.target_name] if kind.target else [])


def test_the_batch_route_documents_every_kind_and_its_limit(document: dict[str, Any]) -> None:
    op = document["paths"]["/v1/batches"]["post"]
    assert op["security"] == [{"bearer": sorted({k.scope for k in KINDS.values()})}]
    assert {"200", "413", "422", "503"} <= set(op["responses"])
    schemas = document["components"]["schemas"]
    assert schemas["BatchIn"]["properties"]["items"]["maxItems"] == MAX_ITEMS
    item = schemas["BatchItemIn"]["properties"]
    assert item["kind"]["enum"] == list(KINDS)
    documented = {part["$ref"].rsplit("/", 1)[-1] for part in item["body"]["anyOf"]}
    assert documented == {k.body.__name__ for k in KINDS.values()}
    assert schemas["BatchIn"]["examples"] and schemas["BatchOut"]["examples"]
