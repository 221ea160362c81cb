"""Agreements as validated data, and payloads restricted by contract (shared.agreements, restriction)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from shared import agreements
from shared.events import payloads as p
from shared.events.restriction import NotWithholdable, restrict, restricted_model

A, B, C = "320412", "440703", "110101"
# What a birth may go without is the contract's (withholdable): the rest must be seen.
BIRTH_VISIBLE = sorted(set(p.BirthRegisteredV1.model_fields) - p.BirthRegisteredV1.withholdable)
BIRTH = {
    "birth_id": str(uuid.uuid4()),
    "medical_certificate_number": "O440000777",
    "child_name": "陈小雨",
    "child_sex": "F",
    "child_birth_date": "2026-10-01",
    "child_id_number": None,
    "mother_id_number": "110101199203150024",
    "father_id_number": "11010119900307123X",
    "birth_order": 1,
    "birth_division": B,
}


def _refused(entries: object) -> str:
    with pytest.raises(agreements.AgreementError) as e:
        agreements.parse(entries, "agreements.yaml")
    return str(e.value)


def test_restrictions_are_per_direction_and_name_the_withheld_fields() -> None:
    [agreement] = agreements.parse(
        [{"division_a": A, "division_b": B, "visible_fields": {B: {"birth.registered.v1": BIRTH_VISIBLE}}}]
    )
    assert agreement.withheld(B, "birth.registered.v1") == {"child_id_number", "father_id_number"}
    assert agreement.withheld(A, "birth.registered.v1") == frozenset()  # the other way: all of it
    assert agreement.withheld(B, "person.registered.v1") == frozenset()
    # A receiver matched by a '*' side reads the restrictions keyed '*'; the named side its own.
    [wide] = agreements.parse(
        [
            {
                "division_a": A,
                "division_b": "*",
                "visible_fields": {"*": {"birth.registered.v1": BIRTH_VISIBLE}},
            }
        ]
    )
    assert wide.withheld(C, "birth.registered.v1") == {"child_id_number", "father_id_number"}
    assert wide.withheld(A, "birth.registered.v1") == frozenset()


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"event_types": ["vital.birth.v1"]}, "unknown event type 'vital.birth.v1'"),
        ({"visible_fields": {B: {"birth.registered.v1": ["birth_date", "place_of_birth"]}}}, "'birth_date'"),
        ({"visible_fields": {B: {"birth.registered.v1": ["birth_id"]}}}, "'child_name'"),
        ({"visible_fields": {"birth.registered.v1": ["birth_id"]}}, "keyed by the receiving division"),
        ({"visible_fields": {C: {"birth.registered.v1": BIRTH_VISIBLE}}}, "'110101' is not a division"),
        ({"event_types": ["exchange.feedback.v1"]}, "not exchanged between jurisdictions"),
        (
            {"event_types": ["person.registered.v1"], "visible_fields": {B: {"birth.registered.v1": []}}},
            "does not let flow",
        ),
        ({"division_a": "999999"}, "unknown division code"),
        ({"deadline_seconds": 0}, "deadline_seconds"),
        ({"event_type": ["*"]}, "event_type"),
    ],
)
def test_an_agreement_naming_what_does_not_exist_is_refused_with_its_name(entry: dict, named: str) -> None:
    message = _refused([{"division_a": A, "division_b": B, **entry}])
    assert named in message
    assert message.startswith("agreements.yaml, agreement 1 (")


def test_a_pair_agreed_twice_is_refused() -> None:
    message = _refused([{"division_a": A, "division_b": B}, {"division_a": B, "division_b": A}])
    assert "agreement 2" in message and "already agreed in agreement 1" in message


def test_the_file_is_the_whole_truth(tmp_path: Path) -> None:
    path = tmp_path / "agreements.yaml"
    path.write_text(
        yaml.safe_dump([{"division_a": A, "division_b": B, "event_types": ["birth.registered.v1"]}])
    )
    loaded = agreements.load(str(path), "production")
    assert agreements.between(loaded, B, A) is not None
    assert agreements.between(loaded, A, C) is None  # not listed: nothing flows
    assert not loaded[0].covers("person.registered.v1")
    # Without a file: one all-permitting agreement in development, none in production.
    assert agreements.between(agreements.load(None, "development"), A, C) is not None
    assert agreements.load(None, "production") == ()
    # The most specific agreement wins over a wildcard.
    both = agreements.parse(
        [{"division_a": "*", "division_b": "*"}, {"division_a": A, "division_b": B, "deadline_seconds": 5}]
    )
    assert agreements.between(both, B, A) == both[1]


def test_a_restricted_payload_is_valid_by_contract_and_only_so() -> None:
    sent = restrict(BIRTH, {"child_id_number", "father_id_number"})
    assert "father_id_number" not in sent
    with pytest.raises(ValidationError):
        p.BirthRegisteredV1.model_validate({**sent, "child_id_number": None} | {"child_name": None})
    model = restricted_model(p.BirthRegisteredV1, frozenset({"child_id_number", "father_id_number"}))
    applied = model.model_validate(sent).model_dump()
    assert applied["father_id_number"] is None and applied["child_name"] == "陈小雨"
    # A field said to be withheld must be absent, and every other field keeps its rule.
    with pytest.raises(ValidationError):
        model.model_validate(BIRTH)
    with pytest.raises(ValidationError):
        model.model_validate({**sent, "child_name": ""})
    # A person's sex and birth date may go (the identity number carries them); the name may not.
    person = restricted_model(p.PersonRegisteredV1, frozenset({"sex", "birth_date"}))
    assert person.model_validate(
        {"id_number": BIRTH["mother_id_number"], "name": "陈静", "hukou_division": A, "residence_division": B}
    )
    with pytest.raises(NotWithholdable, match="'name' of PersonRegisteredV1 cannot be withheld"):
        restricted_model(p.PersonRegisteredV1, frozenset({"name"}))


def test_a_repair_carries_no_more_than_the_record_s_own_event_would(tmp_path: Path) -> None:
    from services.migrant_exchange.domain.reconcile import Difference
    from services.migrant_exchange.domain.routing import agreed_correction
    from services.migrant_exchange.service_layer.agreements import as_agreed
    from services.migrant_exchange.settings import ExchangeSettings

    [agreement] = agreements.parse(
        [{"division_a": A, "division_b": B, "visible_fields": {B: {"birth.registered.v1": BIRTH_VISIBLE}}}]
    )
    repair = {
        "record_type": "birth",
        "record_id": "x",
        "changes": {"child_name": "陈小雨", "father_id_number": "1"},
    }
    assert agreed_correction(repair, lambda t: agreement.withheld(B, t))["changes"] == {
        "child_name": "陈小雨"
    }
    assert agreed_correction(repair, lambda t: agreement.withheld(A, t)) == repair  # the other way: all
    only_hidden = {**repair, "changes": {"father_id_number": "1"}}
    assert agreed_correction(only_hidden, lambda t: agreement.withheld(B, t)) is None  # nothing to send

    path = tmp_path / "agreements.yaml"
    path.write_text(yaml.safe_dump([agreement.row()]))
    settings = ExchangeSettings(agreements_file=str(path))

    def conflict(*fields: str, owner: str = A) -> Difference:
        return Difference(
            "field_conflict", "s", "birth", "O1", fields=fields, detail={"owner_at": {A: owner, B: owner}}
        )

    # A's birth held at B without the father (withheld towards B): no case; any other field still is one.
    assert as_agreed(settings, A, B, [conflict("father_id_number")]) == []
    [kept] = as_agreed(settings, A, B, [conflict("child_name", "father_id_number")])
    assert kept.fields == ("child_name",)
    # B's own birth held at A: nothing is withheld towards A, so the difference stays.
    assert as_agreed(settings, A, B, [conflict("father_id_number", owner=B)])[0].fields == (
        "father_id_number",
    )
