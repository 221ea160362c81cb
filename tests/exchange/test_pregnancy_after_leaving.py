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

import pytest

from devstack.stack import Stack
from tests.exchange.exchange_helpers import A, B, C, applied_at, ok, pregnant_at_b, registry_api
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

CARE = "maternal_care"


def test_a_registry_told_she_moved_away_reads_none_of_her_pregnancy(xstack: Stack) -> None:
    mother, pregnancy_id = pregnant_at_b(xstack)
    path = f"/v1/pregnancies/{pregnancy_id}"
    assert registry_api(xstack, B).get(path, purpose=CARE).status_code == 200  # hers while she lives here

    arrival = {"kind": "arrived", "id_number": mother, "from_division": B, "to_division": C,
               "migration_date": "2026-04-01", "name": "林小兰", "hukou_division": A}  # fmt: skip
    moved = ok(registry_api(xstack, C).post("/v1/migrations", arrival))
    wait_until(lambda: applied_at(xstack, moved["event_id"]) == {A, B}, timeout=15)

    # B knows she left (its record of her says so) and is no longer one of her two registries.
    at_b = ok(registry_api(xstack, B).get(f"/v1/persons/{mother}", purpose="registration"))
    assert (at_b["hukou_division"], at_b["residence_division"]) == (A, C)
    refused = registry_api(xstack, B).get(path, purpose=CARE)
    assert refused.status_code == 404, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["errors"][0]["rule"] == "exists"
    assert "pregnancies" not in ok(registry_api(xstack, B).get(f"/v1/persons/{mother}", purpose=CARE))

    # Her origin, which holds the pregnancy, reads it as before; her new residence, never given it,
    # reads her record without it.
    assert ok(registry_api(xstack, A).get(path, purpose=CARE))["pregnancy_id"] == pregnancy_id
    at_a = ok(registry_api(xstack, A).get(f"/v1/persons/{mother}", purpose=CARE))
    assert [p["pregnancy_id"] for p in at_a["pregnancies"]] == [pregnancy_id]
    assert registry_api(xstack, C).get(path, purpose=CARE).status_code == 404
    assert ok(registry_api(xstack, C).get(f"/v1/persons/{mother}", purpose=CARE)).get("pregnancies") in (
        None,
        [],
    )
