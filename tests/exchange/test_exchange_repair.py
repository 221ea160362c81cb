"""Repair closes the loop: every planted difference of every record kind is repaired through the
product's paths (reconciliation, the operator's resolutions, the registries' repairs travelling
as signed corrections through the exchange), until both registries hold the same records.

Drift is planted directly in the registries' databases; nothing else is written by hand.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from devstack.stack import Stack
from shared.identity import subject_key
from tests.exchange.repair_kit import (
    A,
    B,
    Migrant,
    family_at_destination,
    holdings,
    migrant,
    owners_of,
    plant,
    register_twice,
)
from tests.helpers import Api, query, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture

pytestmark = pytest.mark.e2e
KINDS = ("person", "migration", "marriage", "birth", "pregnancy", "certificate")
OWNER = {"person": A, "migration": A, "marriage": A, "birth": B, "pregnancy": B, "certificate": A}


# Two registries of their own: no other test's traffic between them.
rstack = stack_fixture("rstack", StackSpec("rstack", db_prefix="r_", registries=(A, B)))


@pytest.fixture(scope="module")
def apis(rstack: Stack) -> dict[str, Api]:
    operator = Api(rstack, "migrant_exchange", "operator")
    operator.http.timeout = 60
    return {
        "origin": Api(rstack, f"registry-{A}", f"reg-{A}"),
        "dest": Api(rstack, f"registry-{B}", f"reg-{B}"),
        "operator": operator,
    }


def _reconcile(apis: dict[str, Api]) -> dict[str, Any]:
    r = apis["operator"].post("/v1/reconciliations", {"division_a": A, "division_b": B})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _held(rstack: Stack, cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the exchange keeps of these cases and shows no operator (subject key, record key,
    detail), by case id: read from its database, as the repair reads it."""
    rows = query(
        rstack.service("migrant_exchange").dsn,
        "SELECT id::text AS id, subject, record_key, detail FROM discrepancies WHERE id = ANY($1::uuid[])",
        [c["id"] for c in cases],
    )
    return {r["id"]: {**dict(r), "detail": json.loads(r["detail"])} for r in rows}


def _about(rstack: Stack, cases: list[dict[str, Any]], subjects: list[str] | None) -> list[dict[str, Any]]:
    """The cases about these subjects (all of them when none are named)."""
    if subjects is None:
        return cases
    held = _held(rstack, cases)
    return [c for c in cases if held[c["id"]]["subject"] in subjects]


def _converged(rstack: Stack, apis: dict[str, Api], subjects: list[str] | None = None) -> None:
    """Wait until the exchange carried everything across: a reconciliation that finds nothing
    (about these subjects, when named: an earlier test may have left a dismissed difference)."""

    left: list[Any] = []

    def clean() -> bool:
        run = _reconcile(apis)  # a case found again keeps the run that opened it: read the open ones
        found = apis["operator"].get("/v1/discrepancies", state="open", limit=5000).json()
        left[:] = _about(rstack, [c for c in found if c["kind"] != "sequence_gap"], subjects)
        return not left and (subjects is not None or run["discrepancies"] == 0)

    try:
        wait_until(clean, timeout=30, interval=0.5)
    except AssertionError:
        raise AssertionError(f"still differing: {left}") from None


def _known_at(dsn: str, ids: list[str]) -> None:
    """Wait until a registry holds these people (the exchange carried their moves there)."""
    wait_until(
        lambda: len(query(dsn, "SELECT 1 FROM persons WHERE id_number = ANY($1::text[])", ids)) == len(ids),
        timeout=30,
        interval=0.3,
    )


def _cases(
    rstack: Stack, apis: dict[str, Api], run: dict[str, Any], subjects: list[str] | None = None
) -> list[dict[str, Any]]:
    """The run's cases as the operator reads them (about these subjects, when named)."""
    r = apis["operator"].get("/v1/discrepancies", reconciliation_id=run["reconciliation_id"])
    assert r.status_code == 200, r.text
    return _about(rstack, r.json(), subjects)


def _subjects(rstack: Stack, *people: Migrant) -> list[str]:
    return [subject_key(m.id_number, rstack.subject_secret.encode()) for m in people]


def _case(apis: dict[str, Api], case_id: str) -> dict[str, Any]:
    found = [c for c in apis["operator"].get("/v1/discrepancies", limit=5000).json() if c["id"] == case_id]
    assert len(found) == 1
    return dict(found[0])


def _settled(apis: dict[str, Api], ids: list[str]) -> list[dict[str, Any]]:
    """The cases once no repair is in flight any more."""

    def check() -> list[dict[str, Any]]:
        cases = [_case(apis, i) for i in ids]
        busy = [c for c in cases if c["repair_state"] in ("requested", "awaiting_feedback")]
        return [] if busy else cases

    return wait_until(check, timeout=30, interval=0.3)


def test_every_difference_of_every_kind_is_repaired_and_both_sides_agree(
    rstack: Stack, apis: dict[str, Api]
) -> None:
    dsn = {A: rstack.service(f"registry-{A}").dsn, B: rstack.service(f"registry-{B}").dsn}
    secret = rstack.subject_secret.encode()
    people: dict[tuple[str, str], Migrant] = {}
    for kind in KINDS:
        for what in ("missing_at_copy", "missing_at_owner", "conflict"):
            people[(kind, what)] = migrant(apis["origin"], kind)
    for what in ("duplicate_at_owner", "duplicate_at_both"):
        people[("birth", what)] = migrant(apis["origin"], "birth")
    ids = [m.id_number for m in people.values()]
    _known_at(dsn[B], ids)
    for (kind, _), m in people.items():
        family_at_destination(apis["dest"], m, kind)
    _converged(rstack, apis)
    assert holdings(dsn[A], ids) == holdings(dsn[B], ids)

    expected = _plant_drift(dsn, people, secret)
    assert holdings(dsn[A], ids) != holdings(dsn[B], ids)

    started = time.monotonic()
    run = _reconcile(apis)
    cases = _cases(rstack, apis, run)
    held = _held(rstack, cases)
    assert {(c["kind"], held[c["id"]]["subject"], _kind(c), c["missing_at"]) for c in cases} == expected
    assert run["discrepancies"] == len(expected)

    # The operator resolves every case; each answers 202 and stays open until its feedback.
    for c in cases:
        r = apis["operator"].post(f"/v1/discrepancies/{c['id']}/resolution", {"action": "correct"})
        assert r.status_code in (200, 202), r.text
        assert r.json()["resolution"]["owner"] in (A, B)
    settled = _settled(apis, [c["id"] for c in cases])
    seconds = time.monotonic() - started
    refused = [
        (c["record_kind"], c["kind"], c["repair_state"], c["reason"])
        for c in settled
        if c["state"] != "resolved"
    ]
    assert not refused, refused
    assert all(c["repair_state"] == "applied" for c in settled)

    # The far side applied every repair: both registries hold the same records, and say so.
    assert holdings(dsn[A], ids) == holdings(dsn[B], ids)
    for (kind, what), m in people.items():  # a restored record is filed as its owner's, on both sides
        if what.startswith("missing"):
            assert (
                owners_of(dsn[A], kind, m.records[kind])
                == owners_of(dsn[B], kind, m.records[kind])
                == [OWNER[kind]]
            )
    again = _reconcile(apis)
    assert again["discrepancies"] == 0, _cases(rstack, apis, again)
    print(f"\n{len(cases)} cases repaired in {seconds:.1f}s")


def _plant_drift(
    dsn: dict[str, str], people: dict[tuple[str, str], Migrant], secret: bytes
) -> set[tuple[str, str, str, str | None]]:
    """For each kind: the record lost by the side holding a copy, lost by its owner, and a field
    changed in the copy; one birth registered twice by its owner, another held twice at both.
    Returns the cases a reconciliation must find: (kind, subject, record kind, missing at)."""
    expected: set[tuple[str, str, str, str | None]] = set()
    for (kind, what), m in people.items():
        copy_side = A if OWNER[kind] == B else B
        subject = subject_key(m.id_number, secret)
        if what.startswith("missing"):
            lost_at = copy_side if what == "missing_at_copy" else OWNER[kind]
            plant(dsn[lost_at], kind, m.records[kind], "missing", copy=lost_at != OWNER[kind])
            expected.add(("missing", subject, kind, lost_at))
            if kind == "person":  # without the person, her move is not shared there either
                expected.add(("missing", subject, "migration", lost_at))
        elif what == "conflict":
            plant(dsn[copy_side], kind, m.records[kind], "conflict", copy=True)
            expected.add(("field_conflict", subject, kind, None))
        else:
            assert m.certificate is not None
            register_twice(dsn[B], m.certificate, B)
            if what == "duplicate_at_both":
                register_twice(dsn[A], m.certificate, B)
            expected.add(("duplicate", subject, "birth", None))
    return expected


def _kind(case: dict[str, Any]) -> str:
    """The case's record kind (operators read a pregnancy as the neutral category)."""
    if case["record_kind"] != "pregnancy" and case["record_kind"] in KINDS:
        return str(case["record_kind"])
    assert case["record_kind"] == "vital.restricted", case["record_kind"]
    return "pregnancy"


def test_a_refused_repair_keeps_the_case_open_with_the_reason(rstack: Stack, apis: dict[str, Api]) -> None:
    dsn_b = rstack.service(f"registry-{B}").dsn
    m = migrant(apis["origin"], "marriage")
    _converged(rstack, apis, _subjects(rstack, m))
    plant(dsn_b, "marriage", m.records["marriage"], "spouse")  # another spouse is another marriage
    run = _reconcile(apis)
    [case] = _cases(rstack, apis, run, _subjects(rstack, m))
    assert case["kind"] == "field_conflict" and case["fields"] == ["spouse_b_id_number"]

    r = apis["operator"].post(f"/v1/discrepancies/{case['id']}/resolution", {"action": "correct"})
    assert r.status_code == 202 and r.json()["state"] == "open", r.text
    [after] = _settled(apis, [case["id"]])
    assert after["state"] == "open" and after["repair_state"] == "conflict"
    assert "field-not-repairable" in after["reason"] and "spouse_b_id_number" in after["reason"]
    assert m.id_number not in str(after)  # field names, never values
    listed = apis["operator"].get("/v1/discrepancies", state="open", jurisdiction=B).json()
    assert [(c["repair_state"], c["reason"]) for c in listed if c["id"] == case["id"]] == [
        ("conflict", after["reason"])
    ]
    dismissed = apis["operator"].post(
        f"/v1/discrepancies/{case['id']}/resolution",
        {"action": "dismiss", "note": "a new registration follows"},
    )
    assert dismissed.status_code == 200 and dismissed.json()["state"] == "resolved", dismissed.text


def test_an_owner_takes_its_own_record_back_only_as_its_log_says(rstack: Stack, apis: dict[str, Api]) -> None:
    """B lost the birth it registered; A's copy of it was altered. A sends the copy back, and B,
    checking it against its own event of that birth, refuses it: the case stays open."""
    dsn = {A: rstack.service(f"registry-{A}").dsn, B: rstack.service(f"registry-{B}").dsn}
    m = migrant(apis["origin"], "birth")
    _known_at(dsn[B], [m.id_number])
    family_at_destination(apis["dest"], m, "birth")
    _converged(rstack, apis, _subjects(rstack, m))
    plant(dsn[A], "birth", m.records["birth"], "conflict")
    plant(dsn[B], "birth", m.records["birth"], "missing")
    [case] = _cases(rstack, apis, _reconcile(apis), _subjects(rstack, m))
    assert (case["kind"], case["missing_at"], case["detail"]["owner"]) == ("missing", B, B)

    r = apis["operator"].post(f"/v1/discrepancies/{case['id']}/resolution", {"action": "correct"})
    assert r.status_code == 202 and r.json()["resolution"]["sender"] == A, r.text
    [after] = _settled(apis, [case["id"]])
    assert (after["state"], after["repair_state"]) == ("open", "conflict")
    assert "contradicts our own event" in after["reason"] and "child_name" in after["reason"]
    assert not query(dsn[B], "SELECT 1 FROM births WHERE id = $1", uuid.UUID(m.records["birth"]))


def test_the_operator_reads_cases_as_operations_and_repairs_them_by_their_id(
    rstack: Stack, apis: dict[str, Api]
) -> None:
    """DESIGN section 10: a case shows its kind, state, divisions, field names and times, never the
    subject key, the record's key (here a medical-certificate or a certificate number) or any other
    value; the exchange keeps those, and a repair asked by the case id alone still finds them."""
    dsn = {A: rstack.service(f"registry-{A}").dsn, B: rstack.service(f"registry-{B}").dsn}
    mother, holder = migrant(apis["origin"], "birth"), migrant(apis["origin"], "certificate")
    _known_at(dsn[B], [mother.id_number, holder.id_number])
    family_at_destination(apis["dest"], mother, "birth")
    subjects = _subjects(rstack, mother, holder)
    _converged(rstack, apis, subjects)
    assert mother.certificate is not None
    twice = register_twice(dsn[B], mother.certificate, B)  # the birth registered again at its owner
    plant(dsn[B], "certificate", holder.records["certificate"], "conflict", copy=True)
    run = _reconcile(apis)
    cases = _cases(rstack, apis, run, subjects)
    by_kind = {c["kind"]: c for c in cases}
    assert len(cases) == 2 and set(by_kind) == {"duplicate", "field_conflict"}, cases

    # What the operator works with is there ...
    dup, conflict = by_kind["duplicate"], by_kind["field_conflict"]
    assert (dup["record_kind"], dup["duplicated_at"], dup["missing_at"]) == ("birth", B, None)
    assert (dup["detail"]["owner"], dup["fields"]) == (B, [])
    assert "duplicate_of" in dup["detail"]  # named, its value withheld
    assert (conflict["record_kind"], conflict["fields"]) == ("certificate", ["valid_until"])
    assert conflict["detail"]["owner_at"] == {A: A, B: A}
    for c in cases:
        assert (c["state"], c["repair_state"], c["resolved_at"]) == ("open", None, None)
        assert (c["division_a"], c["division_b"]) == (A, B)
        assert c["reconciliation_id"] == run["reconciliation_id"] and c["id"] and c["created_at"]

    # ... and nothing that says whose or which record, though the exchange holds it all.
    held = _held(rstack, cases)
    assert held[dup["id"]]["record_key"] == twice
    assert held[dup["id"]]["detail"]["duplicate_of"] == mother.certificate
    assert held[conflict["id"]]["record_key"] == holder.records["certificate"]
    values = [
        mother.id_number,
        holder.id_number,
        *subjects,
        mother.certificate,
        twice,
        holder.records["certificate"],
    ]

    def unnamed(case: dict[str, Any]) -> None:
        assert case["subject"] is None and case["record_key"] is None, case
        assert not [v for v in values if v in json.dumps(case)], case

    for c in cases:
        unnamed(c)
    assert dup["detail"]["duplicate_of"] is None

    # The repairs are asked by case id; their answers and the settled cases name nobody either.
    for c in cases:
        r = apis["operator"].post(f"/v1/discrepancies/{c['id']}/resolution", {"action": "correct"})
        assert r.status_code == 202, r.text
        unnamed(r.json())
    settled = _settled(apis, [c["id"] for c in cases])
    assert [(c["state"], c["repair_state"]) for c in settled] == [("resolved", "applied")] * 2
    for c in settled:
        unnamed(c)
    assert not query(dsn[B], "SELECT 1 FROM births WHERE medical_certificate_number = $1", twice)
