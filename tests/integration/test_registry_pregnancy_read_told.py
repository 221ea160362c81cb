"""A read of a pregnancy record reaches the mother's other registry's subject-access log, as a
read of her person record does (``tell_read``): the registry of her residence reads it, her
origin is told. And who reads her pregnancy once she has moved on (real PostgreSQL, the registry
in-process over HTTP)."""

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
LATER = "510104"  # where she moves on to, a third registry
SECRET = "pregnancy-read-told-secret"  # noqa: S105 - a throwaway credential of this test's own clients


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "pregtold", HERE, SECRET, readers=(ORIGIN, LATER)) as (client, dsn):
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


def _as(division: str) -> dict[str, str]:
    """The credentials of another jurisdiction's client, reading this registry's records."""
    return {"Authorization": f"Bearer reg-pregtold-{division}.{SECRET}"}


def test_once_she_moves_on_her_pregnancy_is_read_only_by_her_registries_that_hold_it(
    registry: tuple[TestClient, str],
) -> None:
    """Registered here, where she lives (her origin is told of it), her pregnancy is shared by her
    two registries of that time (DESIGN section 8, docs/trust.md). She then moves on to a third
    place. This registry is no longer one of her two and reads none of it. Her new residence is one
    of her two now, but was never given the pregnancy (the exchange sends it nothing she registered
    before she arrived, nor the pregnancy's closure: ``routing.held_only``), so a read of her record
    here does not give it either: a read discloses no more than the notifications did. Her origin,
    which holds it, still reads it."""
    client, _ = registry
    mother = person_id("F", dt.date(1993, 5, 6))
    person = {"id_number": mother, "name": "林小青", "sex": "F", "birth_date": "1993-05-06",
              "hukou_division": ORIGIN, "residence_division": HERE}  # fmt: skip
    assert client.post("/v1/persons", json=person).status_code == 201
    r = client.post("/v1/pregnancies", json={"mother_id_number": mother, "registered_on": "2026-03-01"})
    assert r.status_code == 201, r.text
    pregnancy_id = r.json()["pregnancy_id"]
    care = {"purpose": "maternal_care"}

    def pregnancies(reader: str) -> list[str] | None:
        read = client.get(f"/v1/persons/{mother}", params=care, headers=_as(reader))
        assert read.status_code == 200, read.text
        listed = read.json().get("pregnancies")
        return None if listed is None else [p["pregnancy_id"] for p in listed]

    assert pregnancies(ORIGIN) == [pregnancy_id]  # told of it: it holds it
    move = {"kind": "departed", "id_number": mother, "from_division": HERE, "to_division": LATER}
    moved = client.post("/v1/migrations", json={**move, "migration_date": "2026-04-01"})
    assert moved.status_code == 201, moved.text

    # This registry is no longer hers: neither the pregnancy nor her record's section.
    assert client.get(f"/v1/pregnancies/{pregnancy_id}", params=care).status_code == 404
    own = client.get(f"/v1/persons/{mother}", params=care)
    assert own.status_code == 200 and "pregnancies" not in own.json()
    # Her new residence reads her record, without the pregnancy it was never given.
    assert pregnancies(LATER) in (None, []), "her new residence reads a pregnancy it was never given"
    # Her origin, which holds it, still does.
    assert pregnancies(ORIGIN) == [pregnancy_id]


def test_a_registry_she_moved_away_from_registers_no_pregnancy_of_hers(
    registry: tuple[TestClient, str],
) -> None:
    """A pregnancy is registered at one of her two registries, which alone share it (DESIGN
    section 8). Once she has moved on, this registry is neither: it refuses to register one for
    her (and so holds none and sends none to her registries), as it reads none of hers."""
    client, dsn = registry
    mother = person_id("F", dt.date(1994, 7, 8))
    person = {"id_number": mother, "name": "林小白", "sex": "F", "birth_date": "1994-07-08",
              "hukou_division": ORIGIN, "residence_division": HERE}  # fmt: skip
    assert client.post("/v1/persons", json=person).status_code == 201
    move = {"kind": "departed", "id_number": mother, "from_division": HERE, "to_division": LATER}
    assert client.post("/v1/migrations", json={**move, "migration_date": "2026-04-01"}).status_code == 201

    r = client.post("/v1/pregnancies", json={"mother_id_number": mother, "registered_on": "2026-05-01"})
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert (error["field"], error["rule"]) == ("mother_id_number", "registered-at-hukou-or-residence")
    assert query(dsn, "SELECT id FROM pregnancies WHERE mother_id_number = $1", mother) == []
