"""A read of a pregnancy record reaches the mother's other registry's subject-access log, as a
read of her person record does (``tell_read``): the registry of her residence reads it, her
origin is told (real PostgreSQL, the registry in-process over HTTP)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from tests.helpers import in_process_registry, person_id, query

HERE = "440703"  # her residence
ORIGIN = "320412"  # her household registration, another registry
SECRET = "pregnancy-read-told-secret"  # noqa: S105 - a throwaway credential of this test's own client


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "pregtold", HERE, SECRET) as (client, dsn):
        yield client, dsn


def _told(dsn: str) -> list[dict[str, object]]:
    rows = query(dsn, "SELECT value FROM outbox WHERE event_type = 'disclosure.recorded.v1' ORDER BY id")
    return [orjson.loads(r["value"])["data"] for r in rows]


def test_a_pregnancy_read_is_told_to_the_mothers_other_registry(registry: tuple[TestClient, str]) -> None:
    client, dsn = registry
    mother = person_id("F", dt.date(1992, 3, 4))
    person = {"id_number": mother, "name": "林小红", "sex": "F", "birth_date": "1992-03-04",
              "hukou_division": ORIGIN, "residence_division": HERE}  # fmt: skip
    assert client.post("/v1/persons", json=person).status_code == 201
    r = client.post("/v1/pregnancies", json={"mother_id_number": mother, "registered_on": "2026-03-01"})
    assert r.status_code == 201, r.text
    before = len(_told(dsn))

    read = client.get(f"/v1/pregnancies/{r.json()['pregnancy_id']}", params={"purpose": "maternal_care"})
    assert read.status_code == 200, read.text
    told = _told(dsn)[before:]
    assert len(told) == 1, told  # her origin's subject-access log names the reader
    assert told[0]["record_at"] == [ORIGIN] and told[0]["recipient"] == "reg-pregtold"
    assert told[0]["recipient_division"] == HERE
    assert told[0]["purpose"] == "vital.restricted"  # maternal care travels under the neutral name
    assert mother not in orjson.dumps(told).decode()

    # a read refused (not for this purpose) tells nobody
    refused = client.get(f"/v1/pregnancies/{r.json()['pregnancy_id']}", params={"purpose": "social_services"})
    assert refused.status_code == 404
    assert len(_told(dsn)) == before + 1
