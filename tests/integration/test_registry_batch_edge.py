"""``POST /v1/batches`` against hostile or mistaken bodies, on a registry served in-process over a
real PostgreSQL: every refusal is problem+json naming the field (its full path) and the rule."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from tests.helpers import in_process_registry, medical_certificate, person_id, query

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


def _person(number: str) -> dict[str, Any]:
    sex = "F" if int(number[16]) % 2 == 0 else "M"
    born = f"{number[6:10]}-{number[10:12]}-{number[12:14]}"
    body = {"id_number": number, "name": "边界", "sex": sex, "birth_date": born, "hukou_division": HERE}
    return {"kind": "person", "body": body}


def test_a_correction_keeps_the_fathers_rules_of_the_birth(registry: tuple[TestClient, str]) -> None:
    """A birth registered with a man born before the child cannot be corrected to name a woman
    (the mother herself included) or a man born after the child as its father."""
    client, dsn = registry
    mother, father, woman = person_id("F"), person_id("M"), person_id("F")
    young = person_id("M", dt.date(2015, 3, 1))
    birth = {
        "medical_certificate_number": medical_certificate(),
        "child_name": "边小宝",
        "child_sex": "F",
        "child_birth_date": "2014-06-01",
        "mother_id_number": mother,
        "father_id_number": father,
    }
    people = [_person(n) for n in (mother, father, woman, young)]
    r = client.post("/v1/batches", json={"items": [*people, {"kind": "birth", "body": birth}]})
    assert r.json()["accepted"] == 5, r.text
    made = r.json()["results"][4]["resource"]

    def correct(changes: dict[str, Any]) -> dict[str, Any]:
        body = {"corrected_event_id": made["event_id"], "record_type": "birth", "record_id": made["birth_id"],
                "changes": changes, "reason": "mistyped at the counter"}  # fmt: skip
        result: dict[str, Any] = client.post(
            "/v1/batches", json={"items": [{"kind": "correction", "body": body}]}
        ).json()["results"][0]
        return result

    for changes, field, rule in (
        ({"father_id_number": woman}, "changes.father_id_number", "father-is-male"),
        ({"father_id_number": mother}, "changes.father_id_number", "father-is-male"),
        ({"father_id_number": young}, "changes.father_id_number", "child-after-father"),
    ):
        result = correct(changes)
        assert result["status"] == 422, result
        error = result["problem"]["errors"][0]
        assert (error["field"], error["rule"]) == (field, rule), result
    kept = query(dsn, "SELECT father_id_number FROM births WHERE id = $1", uuid.UUID(made["birth_id"]))
    assert kept[0]["father_id_number"] == father


def test_a_correction_keeps_the_expected_delivery_plausible(registry: tuple[TestClient, str]) -> None:
    """A pregnancy's expected delivery corrected to a date registration refuses (more than a
    pregnancy's length after registered_on) is refused the same way, and the record is kept."""
    client, dsn = registry
    mother = person_id("F")
    pregnancy = {"mother_id_number": mother, "registered_on": "2025-01-01", "expected_delivery": "2025-09-01"}
    r = client.post(
        "/v1/batches", json={"items": [_person(mother), {"kind": "pregnancy", "body": pregnancy}]}
    )
    assert r.json()["accepted"] == 2, r.text
    made = r.json()["results"][1]["resource"]
    body = {"corrected_event_id": made["event_id"], "record_type": "pregnancy", "record_id": made["pregnancy_id"],
            "changes": {"expected_delivery": "9999-12-31"}, "reason": "mistyped at the counter"}  # fmt: skip
    result = client.post("/v1/batches", json={"items": [{"kind": "correction", "body": body}]}).json()
    assert result["results"][0]["status"] == 422, result
    error = result["results"][0]["problem"]["errors"][0]
    assert (error["field"], error["rule"]) == ("changes.expected_delivery", "expected-delivery-plausible")
    kept = query(
        dsn, "SELECT expected_delivery FROM pregnancies WHERE id = $1", uuid.UUID(made["pregnancy_id"])
    )
    assert kept[0]["expected_delivery"] == dt.date(2025, 9, 1)
