"""A registry's internal reconciliation endpoints answer the exchange's service credential alone.

DESIGN.md sections 8 and 10: operators see operations, not people. The endpoints under
``/v1/internal/reconciliation`` list, per pseudonymous subject, each record's kind (pregnancies
included), its key and keyed hashes of its fields, and make the registry re-send a record. They
take ``reconcile:internal``, which only a client of kind ``service`` may hold (the clients file
checks scopes per kind): an operator's token, the wall screen's included, is refused with a 403
problem naming the scope, as is a jurisdiction's; the exchange's credential gets its answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from shared.auth import hash_secret
from tests.helpers import migrate, person_id

HERE, ORIGIN = "320412", "440703"
INTERNAL = "/v1/internal/reconciliation"
SECRETS = {  # throwaway credentials of this test, one client per kind, each with its kind's scopes
    "reg-here": "internal-jurisdiction",
    "ops-wall": "internal-operator",
    "exchange-service": "internal-service",
}
KINDS = {"reg-here": "jurisdiction", "ops-wall": "operator", "exchange-service": "service"}


def _auth(client_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {client_id}.{SECRETS[client_id]}"}


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str, str]]:
    """A registry of ``HERE`` holding one woman of ``ORIGIN`` and her pregnancy: the client,
    her pseudonymous subject key and the pregnancy id."""
    from services.registry.entrypoints.app import create_app
    from services.registry.settings import RegistrySettings

    dsn = pg.create_database(f"internal_{uuid.uuid4().hex[:8]}")
    asyncio.run(migrate(dsn, "registry", Path("services/registry/migrations")))
    clients = [
        {
            "client_id": client_id,
            "kind": KINDS[client_id],
            "jurisdiction": HERE if KINDS[client_id] == "jurisdiction" else None,
            "secret_hash": hash_secret(secret),
        }
        for client_id, secret in SECRETS.items()
    ]
    settings = RegistrySettings(
        database_url=dsn, jurisdictions=HERE, clients_inline=yaml.safe_dump(clients), run_background=False
    )
    with TestClient(create_app(settings)) as http:
        mother = person_id("F", dt.date(1994, 5, 6))
        person = {
            "id_number": mother,
            "name": "林芳",
            "sex": "F",
            "birth_date": "1994-05-06",
            "hukou_division": ORIGIN,
            "residence_division": HERE,
        }
        r = http.post("/v1/persons", headers=_auth("reg-here"), json=person)
        assert r.status_code == 201, r.text
        pregnancy = {
            "mother_id_number": mother,
            "registered_on": "2026-02-01",
            "expected_delivery": "2026-10-20",
        }
        r = http.post("/v1/pregnancies", headers=_auth("reg-here"), json=pregnancy)
        assert r.status_code == 201, r.text
        pregnancy_id = str(r.json()["pregnancy_id"])
        drill = {"jurisdiction": HERE, "counterpart": ORIGIN, "buckets": 1, "selected": [0]}
        r = http.post(f"{INTERNAL}/records", headers=_auth("exchange-service"), json=drill)
        assert r.status_code == 200, r.text
        subject = next(x["subject"] for x in r.json()["records"] if x["kind"] == "pregnancy")
        yield http, subject, pregnancy_id


def _calls(subject: str, pregnancy_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every internal route, with a request the exchange could make."""
    pair = {"jurisdiction": HERE, "counterpart": ORIGIN}
    repair = {
        **pair,
        "subject": subject,
        "kind": "pregnancy",
        "key": pregnancy_id,
        "action": "send",
        "repair_id": str(uuid.uuid4()),
        "discrepancy_id": str(uuid.uuid4()),
    }
    return [
        ("GET", f"{INTERNAL}/digests", {"params": {**pair, "buckets": 1}}),
        (
            "POST",
            f"{INTERNAL}/digests",
            {"json": {**pair, "buckets": 1, "left_out": [["pregnancy", pregnancy_id]]}},
        ),
        ("POST", f"{INTERNAL}/records", {"json": {**pair, "buckets": 1, "selected": [0]}}),
        ("POST", f"{INTERNAL}/corrections", {"json": repair}),
    ]


@pytest.mark.parametrize("client_id", ["ops-wall", "reg-here"])
def test_an_operator_or_a_jurisdiction_is_refused_on_every_internal_route_naming_the_scope(
    registry: tuple[TestClient, str, str], client_id: str
) -> None:
    http, subject, pregnancy_id = registry
    for method, path, request in _calls(subject, pregnancy_id):
        r = http.request(method, path, headers=_auth(client_id), **request)
        assert r.status_code == 403, f"{client_id} {method} {path}: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["errors"] == [{"field": None, "rule": "scope", "message": problem["detail"]}], problem
        assert problem["scope"] == "reconcile:internal"
        assert "exchange's service client" in problem["detail"]
        assert subject not in r.text and pregnancy_id not in r.text


def test_the_exchanges_service_credential_is_answered_on_every_internal_route(
    registry: tuple[TestClient, str, str],
) -> None:
    http, subject, pregnancy_id = registry
    answered = {}
    counted = {}
    for method, path, request in _calls(subject, pregnancy_id):
        r = http.request(method, path, headers=_auth("exchange-service"), **request)
        answered[path] = r.status_code
        assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
        if path.endswith("/digests"):
            counted[method] = r.json()["records"]
    assert counted["POST"] == counted["GET"] - 1  # the pregnancy the exchange set aside is left out
    assert answered[f"{INTERNAL}/corrections"] == 201  # the pregnancy announced again, whole


def test_the_service_credential_opens_nothing_else(registry: tuple[TestClient, str, str]) -> None:
    http, _, pregnancy_id = registry
    r = http.get(f"/v1/pregnancies/{pregnancy_id}", headers=_auth("exchange-service"))
    assert r.status_code == 403, r.text
    assert r.json()["scope"] == "pregnancy:read"
