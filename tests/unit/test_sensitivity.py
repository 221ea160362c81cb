"""What operators and metric labels may name: sensitive types and topics under the neutral name."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.events.catalog import CATALOG, TOPICS
from shared.events.payloads import ExchangeFeedbackV1, FieldConflict
from shared.sensitivity import (
    FIELDS_WITHHELD,
    NEUTRAL_CATEGORY,
    NEUTRAL_ROUTE,
    NEUTRAL_TOPIC,
    is_restricted,
    is_sensitive,
    neutral_event_type,
    neutral_label,
    neutral_reason,
    neutral_route,
    neutral_text,
    neutral_topic,
    neutral_type,
)


def test_every_pregnancy_type_and_only_those_are_sensitive() -> None:
    assert {t for t in CATALOG if is_sensitive(t)} == {"pregnancy.registered.v1", "pregnancy.closed.v1"}
    assert {neutral_type(t) for t in CATALOG if is_sensitive(t)} == {NEUTRAL_CATEGORY}
    assert neutral_type("birth.registered.v1") == "birth.registered.v1"
    assert neutral_type("pregnancy.registered.v2") == NEUTRAL_CATEGORY  # a new version stays sensitive


def test_no_topic_name_shown_to_operators_names_a_pregnancy() -> None:
    shown = {neutral_topic(t) for t in TOPICS} | {neutral_topic(t + ".dlq") for t in TOPICS}
    assert not [t for t in shown if "pregnan" in t]
    assert neutral_topic("vital.pregnancy.v1") == NEUTRAL_TOPIC
    assert neutral_topic("vital.pregnancy.v1.dlq") == NEUTRAL_TOPIC + ".dlq"
    assert neutral_topic("vital.birth.v1.dlq") == "vital.birth.v1.dlq"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("pregnancy.closed.v1", NEUTRAL_CATEGORY),
        ("vital.pregnancy.v1", NEUTRAL_TOPIC),
        ("vital.person.v1", "vital.person.v1"),
        ("exchange.notification.v1", "exchange.notification.v1"),
    ],
)
def test_a_metric_label_may_be_a_type_or_a_topic(value: str, shown: str) -> None:
    assert neutral_label(value) == shown


def test_free_text_loses_every_sensitive_name_and_keeps_the_rest() -> None:
    reason = (
        "1 validation error for Envelope[PregnancyClosedV1]: pregnancy_id on vital.pregnancy.v1 (outcome)"
    )
    scrubbed = neutral_text(reason)
    assert "regnan" not in scrubbed
    assert scrubbed.startswith("1 validation error for Envelope[") and scrubbed.endswith("(outcome)")
    assert scrubbed.count(NEUTRAL_CATEGORY) == 3


def test_the_pregnancy_routes_share_one_neutral_route_label() -> None:
    assert neutral_route("/v1/pregnancies") == neutral_route("/v1/pregnancies/{pregnancy_id}/closure")
    assert neutral_route("/v1/pregnancies/{pregnancy_id}") == NEUTRAL_ROUTE
    assert neutral_route("/v1/births") == "/v1/births"


def test_a_correction_of_a_pregnancy_is_as_restricted_as_the_pregnancy() -> None:
    assert all(is_restricted(t, {}) for t in CATALOG if is_sensitive(t))
    assert is_restricted(NEUTRAL_CATEGORY, None)
    assert is_restricted("record.corrected.v1", {"record_type": "pregnancy", "changes": {"outcome": "ended"}})
    assert neutral_event_type("record.corrected.v1", {"record_type": "pregnancy"}) == NEUTRAL_CATEGORY
    for record_type in ("person", "marriage", "migration", "birth", "certificate"):
        assert not is_restricted("record.corrected.v1", {"record_type": record_type})
    assert not is_restricted("record.corrected.v1", None)
    assert not is_restricted("marriage.registered.v1", {"record_type": "pregnancy"})  # not a correction


def test_a_restricted_events_reason_names_none_of_its_data_fields() -> None:
    reason = "invalid event: data.changes.expected_delivery.str: Input should be a valid string; data.changes"
    assert neutral_reason(reason, True) == "invalid event: data: Input should be a valid string; data"
    assert neutral_reason(reason, False) == reason
    assert neutral_reason("rejected: not_authorized: pregnancy.closed.v1", False).endswith(NEUTRAL_CATEGORY)


def test_an_answer_to_a_restricted_notification_goes_withheld() -> None:
    """Its conflicting fields and values go, its reason names no pregnancy; the outcome stands."""
    answer = ExchangeFeedbackV1(
        notification_id=uuid.uuid4(),
        from_division="440703",
        outcome="conflict",
        conflicts=[FieldConflict(field="expected_delivery", ours="2026-10-20", theirs="2026-11-03")],
        reason="this pregnancy is recorded here otherwise",
        applied_at=dt.datetime.now(dt.UTC),
    )
    told = answer.withheld()
    assert (told.outcome, told.conflicts) == ("conflict", [])
    assert told.reason == f"this {NEUTRAL_CATEGORY} is recorded here otherwise {FIELDS_WITHHELD}"
    assert answer.model_copy(update={"reason": None}).withheld().reason == FIELDS_WITHHELD
    refused = answer.model_copy(
        update={"outcome": "rejected", "conflicts": [], "reason": "the pregnancy is not in our records"}
    )
    assert refused.withheld().reason == f"the {NEUTRAL_CATEGORY} is not in our records"
    assert refused.model_copy(update={"reason": None}).withheld().reason is None
