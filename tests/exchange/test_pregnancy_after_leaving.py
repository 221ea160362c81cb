"""A registry she moved away from reads none of her pregnancy once it is told she left (three
registries on the real broker, over HTTP).

Her hukou is A and she lives at B; B registers her pregnancy (A is told of it). She then arrives at
C, and C records the arrival: B learns she left from the exchange's notification of that arrival
(the place left hears of a move, ``routing.counterparts``), not from a move it recorded itself.
From then on B is neither her origin nor her residence, and its registrars read none of her
pregnancy (DESIGN sections 8 and 10: her own two registries and nobody else): the record is
answered 404 like any pregnancy not shared with the reader, and her person record comes without
the section. A, which holds it, still reads it; C, which was never given it, reads her record
without it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.exchange.exchange_helpers import A, B, C, new_person
from tests.helpers import Api, query, wait_until

pytestmark = pytest.mark.e2e

CARE = "maternal_care"


def _api(stack: Stack, code: str) -> Api:
    return Api(stack, f"registry-{code}", f"reg-{code}")


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def _applied(stack: Stack, event_id: str, targets: set[str]) -> bool:
    rows = query(
        stack.service("migrant_exchange").dsn,
        "SELECT target_division, state FROM notifications WHERE event_id = $1",
        event_id,
    )
    return {r["target_division"] for r in rows if r["state"] == "applied"} == targets


def test_a_registry_told_she_moved_away_reads_none_of_her_pregnancy(xstack: Stack) -> None:
    mother = new_person()
    born = f"{mother[6:10]}-{mother[10:12]}-{mother[12:14]}"
    person = {"id_number": mother, "name": "林小兰", "sex": "F", "birth_date": born,
              "hukou_division": A, "residence_division": B}  # fmt: skip
    made = _ok(_api(xstack, A).post("/v1/persons", person))
    wait_until(lambda: _applied(xstack, made["event_id"], {B}), timeout=15)
    registered = _ok(_api(xstack, B).post("/v1/pregnancies", {"mother_id_number": mother}))
    wait_until(lambda: _applied(xstack, registered["event_id"], {A}), timeout=15)
    path = f"/v1/pregnancies/{registered['pregnancy_id']}"
    assert _api(xstack, B).get(path, purpose=CARE).status_code == 200  # hers while she lives here

    arrival = {"kind": "arrived", "id_number": mother, "from_division": B, "to_division": C,
               "migration_date": "2026-04-01", "name": "林小兰", "hukou_division": A}  # fmt: skip
    moved = _ok(_api(xstack, C).post("/v1/migrations", arrival))
    wait_until(lambda: _applied(xstack, moved["event_id"], {A, B}), timeout=15)

    # B knows she left (its record of her says so) and is no longer one of her two registries.
    at_b = _ok(_api(xstack, B).get(f"/v1/persons/{mother}", purpose="registration"))
    assert (at_b["hukou_division"], at_b["residence_division"]) == (A, C)
    refused = _api(xstack, B).get(path, purpose=CARE)
    assert refused.status_code == 404, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["errors"][0]["rule"] == "exists"
    assert "pregnancies" not in _ok(_api(xstack, B).get(f"/v1/persons/{mother}", purpose=CARE))

    # Her origin, which holds the pregnancy, reads it as before; her new residence, never given it,
    # reads her record without it.
    assert _ok(_api(xstack, A).get(path, purpose=CARE))["pregnancy_id"] == registered["pregnancy_id"]
    at_a = _ok(_api(xstack, A).get(f"/v1/persons/{mother}", purpose=CARE))
    assert [p["pregnancy_id"] for p in at_a["pregnancies"]] == [registered["pregnancy_id"]]
    assert _api(xstack, C).get(path, purpose=CARE).status_code == 404
    assert _ok(_api(xstack, C).get(f"/v1/persons/{mother}", purpose=CARE)).get("pregnancies") in (None, [])
