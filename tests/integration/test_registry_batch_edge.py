"""``POST /v1/batches`` against hostile or mistaken bodies, on a registry served in-process over a
real PostgreSQL: every refusal is problem+json naming the field (its full path) and the rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from tests.helpers import in_process_registry

HERE = "320412"
SECRET = "batch-edge-secret"  # noqa: S105 - a throwaway credential of this test's own client


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "batchedge", HERE, SECRET) as (client, dsn):
        yield client, dsn


def _refused_whole(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    errors: list[dict[str, Any]] = r.json()["errors"]
    return errors


def test_an_item_without_a_body_is_named_by_its_full_path(registry: tuple[TestClient, str]) -> None:
    client, _ = registry
    errors = _refused_whole(client.post("/v1/batches", json={"items": [{"kind": "person"}]}))
    assert [(e["field"], e["rule"]) for e in errors] == [("items.0.body", "missing")]
