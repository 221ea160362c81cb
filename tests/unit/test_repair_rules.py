"""Who sends which repair (the exchange's plan), and what a registry counts as a whole record."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from services.migrant_exchange.domain.repairs import plan
from services.registry.domain import repairs as rules
from shared.errors import RuleViolation
from shared.identity import compose_id_number

A, B, C = "320412", "440703", "110101"


def _case(kind: str, **kw: Any) -> dict[str, Any]:
    base = {"kind": kind, "division_a": A, "division_b": B, "record_key": "K1", "missing_at": None}
    return {**base, "duplicated_at": None, "detail": {}, **kw}


def test_a_missing_record_is_sent_by_its_holder_whoever_owns_it() -> None:
    lost_by_copy = plan(_case("missing", missing_at=B, detail={"owner": A}), None)
    assert (lost_by_copy.sender, lost_by_copy.target, lost_by_copy.action) == (A, B, "send")
    lost_by_owner = plan(_case("missing", missing_at=A, detail={"owner": A}), None)
    assert (lost_by_owner.sender, lost_by_owner.target, lost_by_owner.owner) == (B, A, A)


def test_a_named_owner_must_be_the_records_owner_and_in_the_pair() -> None:
    with pytest.raises(RuleViolation) as e:
        plan(_case("missing", missing_at=B, detail={"owner": A}), B)
    assert (e.value.field, e.value.rule) == ("owner", "owner-registered")
    with pytest.raises(RuleViolation) as e:
        plan(_case("missing", missing_at=B, detail={"owner": C}), None)
    assert e.value.rule == "owner-in-pair"


def test_a_conflict_is_sent_by_the_owner_and_needs_a_name_when_the_sides_disagree() -> None:
    agreed = plan(_case("field_conflict", detail={"owner_at": {A: B, B: B}}), None)
    assert (agreed.sender, agreed.target) == (B, A)
    with pytest.raises(RuleViolation) as e:
        plan(_case("field_conflict", detail={"owner_at": {A: A, B: B}}), None)
    assert e.value.rule == "owner-required"
    named = plan(_case("field_conflict", detail={"owner_at": {A: A, B: B}}), A)
    assert (named.sender, named.target) == (A, B)
    with pytest.raises(RuleViolation):  # B's own copy says the record came from A
        plan(_case("field_conflict", detail={"owner_at": {A: A, B: A}}), B)
    keyed = plan(_case("field_conflict", detail={"owner_at": {A: A, B: A}, f"key_at_{A}": "K9"}), None)
    assert keyed.key == "K9"


def test_a_duplicate_is_retired_by_its_owner_and_a_gap_is_not_corrected() -> None:
    dup = plan(_case("duplicate", duplicated_at=B, detail={"owner": B, "duplicate_of": "K0"}), None)
    assert (dup.sender, dup.target, dup.action, dup.kept_key) == (B, A, "retire", "K0")
    both = plan(_case("duplicate", detail={"owner": A, "duplicated_at": [A, B], "duplicate_of": "K0"}), None)
    assert (both.sender, both.target) == (A, B)
    with pytest.raises(RuleViolation) as e:
        plan(_case("duplicate", duplicated_at=B, detail={"owner": A, "duplicate_of": "K0"}), None)
    assert e.value.rule == "owner-holds-duplicate"
    with pytest.raises(RuleViolation) as e:
        plan(_case("sequence_gap"), None)
    assert e.value.rule == "gap-dismiss-only"


def test_a_whole_record_is_every_field_of_its_kind_and_nothing_else() -> None:
    mother = compose_id_number("110101", dt.date(1990, 3, 1), 12, "F")
    pid = str(uuid.uuid4())
    values = {"mother_id_number": mother, "registered_in": B, "registered_on": "2025-08-01"}
    values |= {"expected_delivery": "2026-04-01", "closed_on": None, "outcome": None}
    wire = rules.wire_values("pregnancy", pid, pid, values)
    assert "closed_on" not in wire and wire["pregnancy_id"] == pid
    whole = rules.whole_record("pregnancy", wire)
    assert whole is not None and whole["registered_on"] == dt.date(2025, 8, 1)
    assert rules.whole_record("pregnancy", {"registered_on": "2025-08-01"}) is None  # a registrar's fix
    assert rules.whole_record("pregnancy", {**wire, "colour": "red"}) is None
    assert rules.whole_record("certificate", {"valid_until": "2027-01-01"}) is None


def test_only_repairable_fields_may_differ() -> None:
    mother = compose_id_number("110101", dt.date(1990, 3, 1), 12, "F")
    mid = uuid.uuid4()
    row = {"id": mid, "id_number": mother, "kind": "departed", "from_division": A, "to_division": B}
    row["migration_date"] = dt.date(2024, 3, 1)
    theirs = {**{k: v for k, v in row.items() if k != "id"}, "migration_id": mid}
    assert rules.differing("migration", row, theirs) == {}
    assert rules.differing("migration", row, {**theirs, "migration_date": dt.date(2024, 2, 27)}) == {
        "migration_date": dt.date(2024, 2, 27)
    }
    other = compose_id_number("110101", dt.date(1991, 3, 1), 14, "F")
    with pytest.raises(RuleViolation) as e:
        rules.differing("migration", row, {**theirs, "id_number": other})
    assert (e.value.field, e.value.rule) == ("changes.id_number", "field-not-repairable")
