"""Operators read discrepancy cases as operations (DESIGN section 10): every difference the
reconciliation domain makes, and a sequence gap, shown without subject key or record values."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from services.migrant_exchange.domain.reconcile import Record, differences, held_twice
from services.migrant_exchange.entrypoints.views import discrepancy
from shared.sensitivity import NEUTRAL_CATEGORY

A, B = "320412", "440703"
SUBJECT = "5f0c" * 8
# Record keys as registries report them: medical-certificate and certificate numbers, a record id.
BORN, BORN_AGAIN, CERT_A, CERT_B = "O20250001", "X20250001", "C320412000017", "C440703000042"
MARRIAGE = str(uuid.uuid4())
PERSON = "32041219900101002X"
VALUES = (SUBJECT, PERSON, BORN, BORN_AGAIN, CERT_A, CERT_B, MARRIAGE)


def _cases() -> list[dict[str, Any]]:
    """Rows as the exchange stores them for one subject with every kind of difference."""
    left = [
        Record(SUBJECT, "birth", BORN, "h1", identity="child", owner=B),
        Record(SUBJECT, "certificate", CERT_A, "h2", identity="cert", owner=A),
        Record(SUBJECT, "marriage", MARRIAGE, "h3", fields={"marriage_date": "x"}, owner=A),
        Record(SUBJECT, "pregnancy", "p1", "h4", fields={"expected_delivery": "x"}, owner=B),
        Record(SUBJECT, "person", PERSON, "h9", owner=A),
    ]
    right = [
        Record(SUBJECT, "birth", BORN, "h1", identity="child", owner=B),
        Record(SUBJECT, "birth", BORN_AGAIN, "h5", identity="child", owner=B),
        Record(SUBJECT, "certificate", CERT_B, "h6", identity="cert", owner=A),
        Record(SUBJECT, "marriage", MARRIAGE, "h8", fields={"marriage_date": "y"}, owner=A),
        Record(SUBJECT, "pregnancy", "p1", "h7", fields={"expected_delivery": "y"}, owner=B),
    ]
    found = differences(A, B, left, right)
    found += held_twice(A, B, [[SUBJECT, "birth", "X20250002", BORN, B]], [], found)
    rows = [
        {
            **d.__dict__,
            "id": uuid.uuid4(),
            "division_a": A,
            "division_b": B,
            "fields": list(d.fields),
            "state": "open",
            "reason": None,
            "created_at": dt.datetime.now(dt.UTC),
        }
        for d in found
    ]
    gap = {"source": f"/registry/{B}", "missing_from": 3, "missing_to": 4}
    rows.append(
        {
            "kind": "sequence_gap",
            "division_a": B,
            "division_b": B,
            "subject": SUBJECT,
            "record_kind": "event",
            "record_key": f"/registry/{B}#3-4",
            "fields": [],
            "detail": gap,
            "state": "open",
            "reason": f"refused for {PERSON}: a pregnancy.closed.v1 waits",
        }
    )
    return rows


def test_no_case_shows_an_operator_whose_or_which_record() -> None:
    rows = _cases()
    assert {r["kind"] for r in rows} == {"missing", "field_conflict", "duplicate", "sequence_gap"}
    assert any("duplicate_of" in r["detail"] for r in rows) and any(
        "key_at_" in str(r["detail"]) for r in rows
    )
    for row in rows:
        case = discrepancy(row)
        assert case["subject"] is None and case["record_key"] is None
        shown = json.dumps(case, default=str)
        assert not [v for v in VALUES if v in shown], case
        assert "pregnan" not in shown and "expected_delivery" not in case["fields"]


def test_an_operator_sees_what_differs_and_where() -> None:
    shown = [discrepancy(r) for r in _cases()]
    by_detail = {tuple(sorted(c["detail"])): c for c in shown}
    # The names stay; only divisions and sequence numbers keep their values.
    dup = by_detail[("duplicate_of", "owner")]
    assert (dup["kind"], dup["record_kind"], dup["duplicated_at"], dup["detail"]["owner"]) == (
        "duplicate",
        "birth",
        B,
        B,
    )
    assert dup["detail"]["duplicate_of"] is None
    keys = by_detail[(f"key_at_{A}", f"key_at_{B}", "owner_at")]
    assert keys["fields"] == ["key"] and keys["detail"] == {
        f"key_at_{A}": None,
        f"key_at_{B}": None,
        "owner_at": {A: A, B: A},
    }
    [missing] = [c for c in shown if c["kind"] == "missing"]
    assert (missing["record_kind"], missing["missing_at"], missing["detail"]) == ("person", B, {"owner": A})
    both = by_detail[("duplicate_of", "duplicated_at", "owner")]
    assert both["detail"]["duplicated_at"] == [A]
    gap = by_detail[("missing_from", "missing_to", "source")]
    assert gap["detail"] == {"source": f"/registry/{B}", "missing_from": 3, "missing_to": 4}
    assert gap["reason"] == f"refused for [id-number]: a {NEUTRAL_CATEGORY} waits"
    conflicts = {
        c["record_kind"]: c for c in shown if c["kind"] == "field_conflict" and c["fields"] != ["key"]
    }
    assert conflicts["marriage"]["fields"] == ["marriage_date"]
    assert conflicts[NEUTRAL_CATEGORY]["fields"] == [NEUTRAL_CATEGORY]  # a pregnancy's field names it
    assert all(c["state"] == "open" and c["division_a"] in (A, B) for c in shown)
