"""``POST /v1/batches`` against hostile or mistaken bodies, on a registry served in-process over a
real PostgreSQL: every refusal is problem+json naming the field (its full path) and the rule."""

from __future__ import annotations

import datetime as dt
import json
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


def test_text_that_cannot_be_stored_refuses_only_its_item(registry: tuple[TestClient, str]) -> None:
    """A NUL character or a lone surrogate in one item's body or target is that item's refusal,
    named with its field and rule, as any other invalid value of an item; the batch's good items
    are committed beside it. Only text outside the items' kind, target and body (an item's own
    key) still refuses the whole batch, which the item-by-item answer could not name."""
    client, dsn = registry
    good, nul, surrogate, unborn = person_id("F"), person_id("F"), person_id("M"), person_id("F")
    with_nul = _person(nul)
    with_nul["body"]["name"] = "边\x00界"
    dissolution = {
        "kind": "marriage_dissolution",
        "target": "7d2f3c4e-\x00",
        "body": {"dissolution_date": "2025-06-30", "reason": "divorce"},
    }
    items = [_person(good), with_nul, _person(surrogate), dissolution, _person(unborn)]
    # A lone surrogate has no UTF-8 form, so it can only travel as JSON's escape.
    raw = json.dumps({"items": items}).replace(surrogate, surrogate[:6] + "\\ud800" + surrogate[6:], 1)
    headers = {"Content-Type": "application/json"}
    r = client.post("/v1/batches", content=raw.encode(), headers=headers)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [res["status"] for res in results] == [201, 422, 422, 422, 201], r.text
    named = [(e["field"], e["rule"]) for res in results[1:4] for e in res["problem"]["errors"]]
    assert named == [
        ("name", "no-nul-character"),
        ("id_number", "no-lone-surrogate"),
        ("target", "no-nul-character"),
    ]
    kept = query(dsn, "SELECT id_number FROM persons WHERE id_number = ANY($1)", [good, nul, unborn])
    assert sorted(k["id_number"] for k in kept) == sorted([good, unborn])

    stray = [{**_person(person_id("F")), "no\x00te": "x"}]
    whole = _refused_whole(client.post("/v1/batches", json={"items": stray}))
    assert [(e["field"], e["rule"]) for e in whole] == [("items.0.(key)", "no-nul-character")]
