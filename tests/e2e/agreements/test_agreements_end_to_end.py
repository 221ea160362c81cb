"""Agreements end to end (issue 17 point 2): a field restriction per direction that the receiver
applies, reads that follow the agreement and the person's current places, a pregnancy's closure
that follows its registration, and a removed agreement that stops flowing after a restart.

The REST-only jurisdiction of the same stack is exercised in ``test_rest_only_jurisdiction.py``;
both files share the stack of ``conftest.agreements_stack``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from devstack.stack import ROOT, Stack
from tests.e2e.agreements.agreements_kit import (
    REST_ONLY,
    A,
    B,
    agreements_file,
    birth,
    notes_of,
    ok,
    register,
    registry,
    write_agreements,
)
from tests.helpers import Api, person_id, query, wait_until

pytestmark = pytest.mark.e2e


def _applied(stack: Stack, event_id: Any) -> list[Any]:
    notes = notes_of(stack, event_id)
    return notes if notes and all(n["state"] == "applied" for n in notes) else []


def test_a_restricted_birth_is_applied_at_the_counterpart_without_the_withheld_fields(
    agreements_stack: Stack,
) -> None:
    s = agreements_stack
    # 320412 -> 440703: the agreement lets 440703 see births without the father and the child's id.
    mother, father = person_id(), person_id("M")
    ok(register(s, A, mother, hukou=A, residence=B))
    ok(register(s, A, father, hukou=A, residence=A))
    born = ok(birth(s, A, mother, father))
    [note] = wait_until(lambda: _applied(s, born["event_id"]), timeout=15)
    assert note["target_division"] == B and note["withheld_fields"] == ["child_id_number", "father_id_number"]
    at_b = query(
        s.service(f"registry-{B}").dsn,
        "SELECT child_name, father_id_number, source_division FROM births WHERE id = $1",
        born["birth_id"],
    )
    assert [tuple(r) for r in at_b] == [(born["child_name"], None, A)]

    # The other direction is not restricted: 320412 sees 440703's births whole.
    mother2, father2 = person_id(), person_id("M")
    ok(register(s, B, mother2, hukou=B, residence=A))
    ok(register(s, B, father2, hukou=B, residence=B))
    born2 = ok(birth(s, B, mother2, father2))
    [note2] = wait_until(lambda: _applied(s, born2["event_id"]), timeout=15)
    assert note2["target_division"] == A and note2["withheld_fields"] == []
    at_a = query(
        s.service(f"registry-{A}").dsn, "SELECT father_id_number FROM births WHERE id = $1", born2["birth_id"]
    )
    assert at_a[0]["father_id_number"] == father2

    # Reconciling the pair: the father's number, absent at 440703 by the agreement, is no drift
    # (a case would "repair" it by sending what the agreement withholds).
    operator = Api(s, "migrant_exchange", "operator")
    run = ok(operator.post("/v1/reconciliations", {"division_a": A, "division_b": B}))
    assert run["state"] == "finished", run
    # The operator's cases name no record: which birth a case is about, the exchange's table says.
    about_birth = query(
        s.service("migrant_exchange").dsn,
        "SELECT id FROM discrepancies WHERE reconciliation_id = $1 AND record_key = $2",
        run["reconciliation_id"],
        born["medical_certificate_number"],
    )
    assert about_birth == []


def test_reads_follow_the_agreement_and_the_person_s_current_places(agreements_stack: Stack) -> None:
    s = agreements_stack
    mother = person_id()
    ok(register(s, A, mother, hukou=A, residence=B))
    preg = ok(
        registry(s, A).post(
            "/v1/pregnancies", {"mother_id_number": mother, "expected_delivery": "2027-01-15"}
        )
    )
    wait_until(lambda: _applied(s, preg["event_id"]), timeout=15)
    # Applied at 440703 without the withheld expected delivery date.
    at_b = query(
        s.service(f"registry-{B}").dsn,
        "SELECT expected_delivery FROM pregnancies WHERE id = $1",
        preg["pregnancy_id"],
    )
    assert [r["expected_delivery"] for r in at_b] == [None]

    # An operator sees that fields were withheld, not which (the name would tell a pregnancy).
    listed = ok(Api(s, "migrant_exchange", "operator").get("/v1/notifications", jurisdiction=B, limit=1000))
    [seen_op] = [n for n in listed if n["event_id"] == str(preg["event_id"])]
    assert seen_op["event_type"] == seen_op["withheld_fields"][0] == "vital.restricted"

    own = ok(registry(s, A).get(f"/v1/persons/{mother}", purpose="maternal_care"))
    assert own["pregnancies"][0]["expected_delivery"] == "2027-01-15"
    counterpart = registry(s, A, reader=B)
    seen = ok(counterpart.get(f"/v1/persons/{mother}", purpose="maternal_care"))
    assert [p["pregnancy_id"] for p in seen["pregnancies"]] == [preg["pregnancy_id"]]
    assert seen["pregnancies"][0].get("expected_delivery") is None  # what its agreement withholds

    # She comes home: 440703 is no longer her destination, and reads nothing more of her...
    back = ok(
        registry(s, A).post(
            "/v1/migrations",
            {
                "kind": "returned",
                "id_number": mother,
                "from_division": B,
                "to_division": A,
                "migration_date": "2026-06-01",
                "name": "李梅",
                "hukou_division": A,
            },
        )
    )
    wait_until(lambda: _applied(s, back["event_id"]), timeout=15)
    gone = counterpart.get(f"/v1/persons/{mother}", purpose="maternal_care")
    assert gone.status_code == 404 and gone.json()["errors"][0]["rule"] == "person-must-exist"
    # ...but the closure of the pregnancy it was told of still reaches it.
    closed = ok(registry(s, A).post(f"/v1/pregnancies/{preg['pregnancy_id']}/closure", {"outcome": "ended"}))
    [note] = wait_until(lambda: _applied(s, closed["event_id"]), timeout=15)
    assert note["target_division"] == B
    at_b = query(
        s.service(f"registry-{B}").dsn, "SELECT outcome FROM pregnancies WHERE id = $1", preg["pregnancy_id"]
    )
    assert [r["outcome"] for r in at_b] == ["ended"]


def _serve(s: Stack, name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    svc = s.service(name)
    module = svc.module
    full = {**s._env_of(svc), **env}
    return subprocess.run(
        [sys.executable, "-m", module, "serve"],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_agreement_naming_an_unknown_field_refuses_to_start(
    agreements_stack: Stack, tmp_path: Any
) -> None:
    s = agreements_stack
    bad = tmp_path / "bad-agreements.yaml"
    bad.write_text(
        yaml.safe_dump(
            [
                {
                    "division_a": A,
                    "division_b": B,
                    "event_types": ["birth.registered.v1"],
                    "visible_fields": {B: {"birth.registered.v1": ["birth_id", "place_of_birth"]}},
                }
            ]
        )
    )
    for name in ("migrant_exchange", f"registry-{A}"):
        started = _serve(s, name, {"AGREEMENTS_FILE": str(bad), "PORT": "1"})
        assert started.returncode != 0
        said = started.stdout + started.stderr
        assert "unknown field 'place_of_birth' of birth.registered.v1" in said, said[-2000:]
        assert "Application startup complete" not in said


def test_removing_an_agreement_stops_its_flow_after_a_restart(agreements_stack: Stack) -> None:
    s = agreements_stack
    exchange = s.service("migrant_exchange")
    before = ok(register(s, B, person_id(), hukou=REST_ONLY, residence=B))
    wait_until(lambda: notes_of(s, before["event_id"]), timeout=15)  # 440703 <-> 110101 flows

    entries = yaml.safe_load(agreements_file(s).read_text())
    kept = [e for e in entries if {e["division_a"], e["division_b"]} != {B, REST_ONLY}]
    write_agreements(s, kept)
    try:
        s.restart_service(exchange)
        after = ok(register(s, B, person_id(), hukou=REST_ONLY, residence=B))
        # The exchange consumed the registration (its inbox has it) and notified nobody.
        wait_until(
            lambda: query(exchange.dsn, "SELECT 1 FROM inbox WHERE event_id = $1", after["event_id"]),
            timeout=15,
        )
        assert notes_of(s, after["event_id"]) == []
        rows = query(exchange.dsn, "SELECT division_a, division_b FROM agreements ORDER BY 1, 2")
        assert tuple(sorted((B, REST_ONLY))) not in [tuple(r) for r in rows] and len(rows) == len(kept)
    finally:
        write_agreements(s, entries)
        s.restart_service(exchange)
