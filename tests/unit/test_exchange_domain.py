"""Pure rules of the exchange: routing through the migration history, and classifying differences."""

from __future__ import annotations

import datetime as dt

from services.migrant_exchange.domain.reconcile import (
    Difference,
    Record,
    differences,
    differing_buckets,
    held_by,
    held_twice,
    set_aside,
)
from services.migrant_exchange.domain.routing import (
    Whereabouts,
    after_event,
    by_her_registry,
    counterparts,
    held_record,
    named_record,
    retry_delay,
)

A, B, C = "320412", "440703", "110101"
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _move(w: Whereabouts, kind: str, frm: str, to: str, hours: int) -> Whereabouts:
    data = {"hukou_division": A, "from_division": frm, "to_division": to}
    return after_event(
        w, f"migration.{kind}.v1", data, Whereabouts(None, None), T0 + dt.timedelta(hours=hours)
    )


def test_a_person_who_moved_on_is_no_longer_the_place_left_s_business() -> None:
    w = _move(Whereabouts(A, A, T0), "departed", A, B, 1)
    w = _move(w, "departed", B, C, 2)
    assert counterparts(C, "birth.registered.v1", {}, w) == {A}
    # a late, older move on another topic does not undo the newer one
    assert _move(w, "arrived", A, B, 1).residence == C


def test_a_returnee_s_events_stay_at_the_origin_and_pregnancy_goes_to_her_own_two_only() -> None:
    w = _move(_move(Whereabouts(A, A, T0), "departed", A, B, 1), "returned", B, A, 3)
    assert counterparts(A, "birth.registered.v1", {}, w) == set()
    away = Whereabouts(A, B, T0)
    assert counterparts(B, "pregnancy.registered.v1", {"registered_in": C}, away) == {A}


def test_a_marriage_reaches_both_spouses_places() -> None:
    spouse = Whereabouts(C, C, T0)
    got = counterparts(B, "marriage.registered.v1", {"registered_in": B}, Whereabouts(A, B, T0), (spouse,))
    assert got == {A, C}


def test_a_pregnancy_s_closure_and_correction_reach_its_holders_alone() -> None:
    moved_on = Whereabouts(A, C, T0)  # B registered it while she lived there, A was told; now at C
    closed = {"pregnancy_id": "p"}
    assert counterparts(A, "pregnancy.closed.v1", closed, moved_on, holders={A, B}) == {B}
    assert counterparts(A, "pregnancy.closed.v1", closed, moved_on) == set()  # C never held it
    corrected = {"record_type": "pregnancy", "record_id": "p"}
    assert counterparts(B, "record.corrected.v1", corrected, moved_on, holders={A, B}) == {A}


def test_a_correction_reaches_the_record_s_holders_alone_once_they_are_known() -> None:
    """Married at A while she lived at B (B told), now living at C: C never held the marriage."""
    moved_on = Whereabouts(A, C, T0)
    for kind in ("marriage", "birth", "certificate"):
        corrected = {"record_type": kind, "record_id": "m"}
        assert counterparts(A, "record.corrected.v1", corrected, moved_on, holders={A, B}) == {B}
        assert counterparts(A, "record.corrected.v1", corrected, moved_on) == {C}  # none known: her places
    person = {"record_type": "person", "record_id": "id"}  # holds nothing at the exchange
    assert counterparts(A, "record.corrected.v1", person, moved_on) == {C}


def test_a_revocation_or_a_dissolution_reaches_the_record_s_holders_alone_once_they_are_known() -> None:
    number = {"certificate_number": "320412-2026-ABCD2345"}
    assert held_record("certificate.issued.v1", number) == ("certificate", number["certificate_number"])
    assert named_record("certificate.revoked.v1", number) == ("certificate", number["certificate_number"])
    moved_on = Whereabouts(A, C, T0)  # B kept a copy of A's certificate while she lived there
    assert counterparts(A, "certificate.revoked.v1", number, moved_on, holders={A, B}) == {B}
    assert counterparts(A, "certificate.revoked.v1", number, moved_on) == {C}  # none known: her places
    ended = {"marriage_id": "m"}
    assert counterparts(A, "marriage.dissolved.v1", ended, moved_on, holders={A, B}) == {B}
    assert counterparts(A, "marriage.dissolved.v1", ended, moved_on) == {C}


def test_a_pregnancy_is_registered_only_by_her_hukou_or_her_residence_once_the_roster_knows_her() -> None:
    away = Whereabouts(A, B, T0)
    assert by_her_registry(A, "pregnancy.registered.v1", away)
    assert by_her_registry(B, "pregnancy.registered.v1", away)
    assert not by_her_registry(C, "pregnancy.registered.v1", away)
    assert by_her_registry(C, "pregnancy.registered.v1", _move(away, "arrived", B, C, 1))
    assert not by_her_registry(C, "pregnancy.registered.v1", Whereabouts(A, None))
    assert by_her_registry(C, "pregnancy.registered.v1", Whereabouts(None, None))  # unknown: as it comes
    assert by_her_registry(C, "marriage.registered.v1", away)  # a marriage: its place of record


def test_retries_back_off_up_to_a_cap() -> None:
    assert [retry_delay(10, n, 60) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def _r(key: str, h: str, identity: str | None = None, **fields: str) -> Record:
    return Record("s1", "birth", key, h, identity, fields)


def test_differences_are_classified_missing_conflict_duplicate() -> None:
    left = [_r("X", "h1", "i1", name="n1"), _r("Y", "h2", "i1", name="n1"), _r("M", "h3", None, date="d1")]
    right = [_r("X", "h1", "i1", name="n1"), _r("M", "h4", None, date="d2"), _r("Z", "h5", "i9")]
    got = {
        (d.kind, d.record_key, d.missing_at, d.duplicated_at, d.fields)
        for d in differences(A, B, left, right)
    }
    assert got == {
        ("duplicate", "Y", None, A, ()),
        ("field_conflict", "M", None, None, ("date",)),
        ("missing", "Z", A, None, ()),
    }


def test_the_same_birth_under_two_certificate_numbers_is_one_conflict() -> None:
    got = differences(A, B, [_r("X", "h1", "i1")], [_r("W", "h2", "i1")])
    assert [(d.kind, d.fields) for d in got] == [("field_conflict", ("key",))]


def test_differing_buckets_compare_counts_and_digests() -> None:
    assert differing_buckets({1: (2, "10"), 2: (1, "5")}, {1: (2, "10"), 2: (1, "6"), 3: (1, "7")}) == [2, 3]


def test_a_duplicate_both_sides_hold_is_one_case_and_a_known_one_is_not_repeated() -> None:
    known = [Difference("duplicate", "s1", "birth", "Y", duplicated_at=A, detail={"duplicate_of": "X"})]
    got = held_twice(
        A, B, [["s1", "birth", "Y", "X"], ["s2", "birth", "Q", "P"]], [["s2", "birth", "Q", "P"]], known
    )
    assert [(d.subject, d.record_key, d.duplicated_at, d.detail["duplicated_at"]) for d in got] == [
        ("s2", "Q", None, [A, B])
    ]


def test_a_record_counts_for_a_counterpart_only_if_the_exchange_sent_it_there() -> None:
    birth = Record("s1", "birth", "MC1", "h1", record_id="b-1")  # its holders go by its exchange key
    certificate = Record("s1", "certificate", "320412-2026-X", "h2")  # by its number, the key
    unknown = Record("s1", "marriage", "m-9", "h3")  # made before the exchange kept holders
    holders = {("birth", "b-1"): {B, A}, ("certificate", "320412-2026-X"): {A, B, C}}

    assert held_by((A, C), [birth, certificate, unknown], holders) == [certificate, unknown]
    assert held_by((A, B), [birth, certificate, unknown], holders) == [birth, certificate, unknown]
    # a copy C holds though it was never sent one is left out at C too, not "missing at A"
    stray = Record("s1", "birth", "MC1", "h1", record_id="b-1")
    assert held_by((A, C), [stray], holders) == []


def test_what_held_by_leaves_out_is_set_aside_and_judged_again_by_the_holders_of_the_day() -> None:
    records = [("birth", "b-1"), ("certificate", "320412-2026-X"), ("marriage", "m-9")]
    holders = {("birth", "b-1"): {B, A}, ("certificate", "320412-2026-X"): {A, B, C}}
    assert set_aside((A, C), records, holders) == {("birth", "b-1")}
    assert set_aside((A, B), records, holders) == set()
    # its holders gone (a pregnancy's at its closure), a record is compared again
    assert set_aside((A, C), records, {}) == set()
