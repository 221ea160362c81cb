"""The registrar's rules as pure functions: each one refuses what it should, naming itself."""

from __future__ import annotations

import datetime as dt

import pytest

from services.registry.domain import access, births, corrections, marriages, migrations, persons, pregnancies
from shared.errors import Conflict, DomainError, RuleViolation

D = dt.date


def rule_of(exc: pytest.ExceptionInfo[DomainError]) -> str | None:
    return exc.value.rule


def test_marriage_rules() -> None:
    spouses = [("spouse_a_id_number", "M", D(1990, 1, 1)), ("spouse_b_id_number", "F", D(1992, 1, 1))]
    marriages.check_marriage(D(2020, 1, 1), spouses, {}, {})
    with pytest.raises(RuleViolation) as e:
        marriages.check_marriage(D(2011, 6, 1), spouses, {}, {})
    assert rule_of(e) == "marriage-age"
    with pytest.raises(Conflict) as c:
        marriages.check_marriage(D(2020, 1, 1), spouses, {"spouse_b_id_number": True}, {})
    assert rule_of(c) == "one-active-marriage" and c.value.field == "spouse_b_id_number"
    with pytest.raises(RuleViolation) as e:
        marriages.check_marriage(D(2020, 1, 1), spouses, {}, {"spouse_a_id_number": D(2021, 1, 1)})
    assert rule_of(e) == "marriages-in-date-order"


def test_dissolution_and_pregnancy_rules() -> None:
    with pytest.raises(Conflict):
        marriages.check_dissolution(D(2020, 1, 1), D(2021, 1, 1), D(2022, 1, 1))
    with pytest.raises(RuleViolation):
        marriages.check_dissolution(D(2020, 1, 1), None, D(2019, 1, 1))
    pregnancies.check_pregnancy("F", D(1990, 1, 1), D(2025, 1, 1), D(2025, 9, 1), False)
    for args, rule in [
        (("M", D(1990, 1, 1), D(2025, 1, 1), None, False), "mother-is-female"),
        (("F", D(1990, 1, 1), D(2025, 1, 1), D(2026, 6, 1), False), "expected-delivery-plausible"),
        (("F", D(1990, 1, 1), D(2025, 1, 1), None, True), "one-open-pregnancy"),
    ]:
        with pytest.raises(DomainError) as e:
            pregnancies.check_pregnancy(*args)  # type: ignore[arg-type]
        assert rule_of(e) == rule


def test_arrival_needs_a_departure_unless_first_record() -> None:
    here = "440703"
    migrations.check_migration("arrived", here, "320412", here, D(2025, 1, 1), None, "320412")
    pending = migrations.Residence("320412", here, D(2024, 12, 1), "departed", here)
    migrations.check_migration("arrived", here, "320412", here, D(2025, 1, 1), pending, "320412")
    settled = migrations.Residence("320412", here, D(2024, 12, 1), "arrived", here)
    with pytest.raises(RuleViolation) as e:
        migrations.check_migration("arrived", here, "320412", here, D(2025, 1, 1), settled, "320412")
    assert rule_of(e) == "arrival-needs-departure"


def test_corrections_name_fields_and_values() -> None:
    assert corrections.parse_changes("birth", {"child_birth_date": "2024-01-02"}) == {
        "child_birth_date": D(2024, 1, 2)
    }
    for record, changes, rule in [
        ("certificate", {"x": 1}, "not-correctable"),
        ("birth", {"mother_id_number": "x"}, "field-not-correctable"),
        ("birth", {"child_birth_date": "tomorrow"}, "valid-value"),
        ("birth", {"child_sex": "X"}, "valid-value"),
    ]:
        with pytest.raises(RuleViolation) as e:
            corrections.parse_changes(record, changes)
        assert rule_of(e) == rule


def test_a_corrected_pregnancy_still_closes_after_its_registration() -> None:
    """Not the table's CHECK (a 409 naming a constraint): the field and the rule it breaks."""
    closed = {
        "registered_on": D(2026, 2, 1),
        "expected_delivery": D(2026, 10, 20),
        "closed_on": D(2026, 3, 1),
    }
    corrections.check_pregnancy_dates(closed)
    same_day = {**closed, "registered_on": D(2026, 3, 1)}  # closed the day it was registered
    corrections.check_pregnancy_dates(same_day)
    for changes, field, rule in [
        ({"registered_on": D(2026, 4, 1)}, "changes.registered_on", "closure-after-registration"),
        ({"expected_delivery": D(2026, 1, 1)}, "changes.expected_delivery", "expected-delivery-plausible"),
    ]:
        with pytest.raises(RuleViolation) as e:
            corrections.check_pregnancy_dates({**closed, **changes})
        assert (e.value.field, rule_of(e)) == (field, rule)


def test_pregnancy_data_only_for_the_persons_own_two_registries() -> None:
    assert access.may_see_pregnancies("440703", True, "maternal_care", "320412", "440703")
    assert not access.may_see_pregnancies("110101", True, "maternal_care", "320412", "440703")
    assert not access.may_see_pregnancies("440703", False, "maternal_care", "320412", "440703")
    assert not access.may_see_pregnancies("440703", True, "social_services", "320412", "440703")


def test_a_counterpart_reads_only_the_pregnancies_it_was_given() -> None:
    """At 320412 (her origin): one registered here while she lived at 440703 (told of it), a copy
    sent by 440703, and one registered here while she lived here (nobody told). Her residence now,
    110101 after moving on, was given none of them."""
    told = access.told_of_registration("320412", "320412", "440703")
    assert told == ["440703"] and access.told_of_registration("320412", "320412", "320412") == []
    kept = [
        {"pregnancy_id": "a", "source_division": "320412", "shared_with": told},
        {"pregnancy_id": "b", "source_division": "440703", "shared_with": []},
        {"pregnancy_id": "c", "source_division": "320412", "shared_with": []},
    ]

    def seen(reader: str) -> list[str]:
        return [r["pregnancy_id"] for r in access.held_by(reader, "320412", kept)]

    assert seen("320412") == ["a", "b", "c"] and seen("440703") == ["a", "b"] and seen("110101") == []
    assert all("shared_with" not in r for r in access.held_by("320412", "320412", kept))


def test_a_counterpart_reads_a_person_of_whom_it_is_the_current_origin_or_destination() -> None:
    assert access.shares_with("440703", "320412", "440703")
    assert access.shares_with("320412", "320412", "440703")
    # She returned home from 440703 (or moved on to 110101): 440703 is told nothing new of her.
    assert not access.shares_with("440703", "320412", "320412")
    assert not access.shares_with("440703", "320412", "110101")


def test_a_counterpart_sees_the_sections_and_fields_its_agreement_lets_flow() -> None:
    births_only = {"birth.registered.v1"}.__contains__
    assert access.agreed_sections({"births", "migrations", "certificates"}, births_only) == {
        "births",
        "certificates",
    }
    pregnancies = [{"pregnancy_id": "p", "expected_delivery": "2026-01-01"}]
    assert access.without_withheld(pregnancies, {"expected_delivery"}) == [
        {"pregnancy_id": "p", "expected_delivery": None}
    ]


@pytest.mark.parametrize(
    ("kind", "frm", "to", "hukou", "rule"),
    [
        ("departed", "110101", "440703", "320412", "departure-recorded-at-origin"),
        ("arrived", "320412", "110101", "320412", "arrival-recorded-at-destination"),
        ("returned", "440703", "320412", "110101", "return-to-hukou"),
        ("departed", "320412", "440703", "320412", "person-must-exist"),
    ],
)
def test_each_migration_rule_names_itself(kind: str, frm: str, to: str, hukou: str, rule: str) -> None:
    with pytest.raises(RuleViolation) as e:
        migrations.check_migration(kind, "320412", frm, to, D(2025, 1, 1), None, hukou)
    assert rule_of(e) == rule


def test_parent_and_person_rules() -> None:
    births.check_parents("F", "M", D(1990, 1, 1), D(2020, 1, 1))
    for args, rule in [
        (("M", None, None, D(2020, 1, 1)), "mother-is-female"),
        (("F", "F", D(1990, 1, 1), D(2020, 1, 1)), "father-is-male"),
        (("F", "M", D(2021, 1, 1), D(2020, 1, 1)), "child-after-father"),
    ]:
        with pytest.raises(RuleViolation) as e:
            births.check_parents(*args)  # type: ignore[arg-type]
        assert rule_of(e) == rule
    with pytest.raises(RuleViolation) as e:
        persons.check_person_birth_date(D(1990, 1, 1), D(1990, 1, 2))
    assert rule_of(e) == "birth-date-matches-id-number"
    with pytest.raises(RuleViolation) as e:
        births.check_birth(D(1990, 1, 1), D(2020, 1, 1), 2, 0)
    assert rule_of(e) == "birth-order-consistent"
