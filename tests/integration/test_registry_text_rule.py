"""The registry API refuses formula-like names with a 422 problem+json naming field and rule, and
writes nothing; the same rule the roster import applies (``shared.text``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from tests.helpers import in_process_registry, medical_certificate, person_id, query

HERE = "320412"
SECRET = "text-rule-secret"  # noqa: S105 - a throwaway credential of this test's own client
FORMULAS = ["=1+2", '=HYPERLINK("http://evil.example/x","张三")', "-2+3+cmd|' /C calc'!A0", "@A1", "\t+1"]


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "text", HERE, SECRET) as (client, dsn):
        yield client, dsn


def _refused(r: Any, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"] == [
        {"field": field, "rule": "no-formula-prefix", "message": r.json()["errors"][0]["message"]}
    ]
    assert "formula" in r.json()["errors"][0]["message"]


def _counts(dsn: str) -> tuple[int, int, int]:
    row = query(
        dsn,
        "SELECT (SELECT count(*) FROM persons) AS p, (SELECT count(*) FROM births) AS b,"
        " (SELECT count(*) FROM outbox) AS o",
    )[0]
    return row["p"], row["b"], row["o"]


@pytest.mark.parametrize("name", FORMULAS)
def test_formula_names_are_refused_and_nothing_is_written(
    registry: tuple[TestClient, str], name: str
) -> None:
    client, dsn = registry
    before = _counts(dsn)
    mother = person_id("F", dt.date(1990, 5, 6))
    person = {
        "id_number": mother,
        "name": name,
        "sex": "F",
        "birth_date": "1990-05-06",
        "hukou_division": HERE,
    }
    _refused(client.post("/v1/persons", json=person), "name")
    assert _counts(dsn) == before

    # a tab in front of an ordinary name is neutralised (stripped), not refused
    r = client.post("/v1/persons", json={**person, "name": "\t陈静"})
    assert r.status_code == 201, r.text
    assert query(dsn, "SELECT name FROM persons WHERE id_number = $1", mother)[0]["name"] == "陈静"

    birth = {"medical_certificate_number": medical_certificate(), "child_name": name, "child_sex": "F",
             "child_birth_date": "2025-10-01", "mother_id_number": mother}  # fmt: skip
    before = _counts(dsn)
    _refused(client.post("/v1/births", json=birth), "child_name")
    assert _counts(dsn) == before
    r = client.post("/v1/births", json={**birth, "child_name": "陈小雨"})
    assert r.status_code == 201, r.text

    correction = {"corrected_event_id": r.json()["event_id"], "record_type": "birth",
                  "record_id": r.json()["birth_id"], "changes": {"child_name": name},
                  "reason": "the name was mistyped"}  # fmt: skip
    before = _counts(dsn)
    _refused(client.post("/v1/corrections", json=correction), "changes.child_name")
    assert _counts(dsn) == before
    names = query(dsn, "SELECT child_name FROM births WHERE mother_id_number = $1", mother)
    assert [n["child_name"] for n in names] == ["陈小雨"]
