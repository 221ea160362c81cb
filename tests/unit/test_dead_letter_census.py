"""The exchange's census of every service's dead letters: one row per letter from its headers alone."""

from __future__ import annotations

import datetime as dt

import pytest

from services.migrant_exchange.domain.dead_letters import letter, reason_kind
from shared.sensitivity import NEUTRAL_CATEGORY, NEUTRAL_TOPIC


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("rejected: unsigned: the event carries no signer and signature", "rejected: unsigned"),
        ("rejected: not_authorized: 440703 reports a disclosure by verification", "rejected: not_authorized"),
        ("invalid event: data.birth_order: Input should be less than or equal to 20", "invalid event"),
        ("event type birth.registered.v2 does not belong on topic vital.person.v1", "wrong topic"),
        ("JSONDecodeError: unexpected character: line 1 column 1 (char 0)", "JSONDecodeError"),
        ("a sentence without a class: and more", "other"),
    ],
)
def test_reasons_are_counted_by_kind(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind


def test_a_letter_keeps_where_when_and_why_never_what() -> None:
    at = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    headers = {
        "dlq_reason": "invalid event: data.pregnancy_id: Input should be a valid UUID; 110101199003071233",
        "dlq_topic": "vital.pregnancy.v1",
        "dlq_consumer": "registry-440703",
        "dlq_service": "registry-440703",
        "dlq_id": "0190-abc",
        "dlq_at": at.isoformat(),
    }
    row = letter(headers, "vital.pregnancy.v1.dlq", 3, 17, 0)
    assert (row.id, row.service, row.consumer, row.created_at) == (
        "0190-abc",
        "registry-440703",
        "registry-440703",
        at,
    )
    assert row.topic == NEUTRAL_TOPIC and row.reason == "invalid event"
    assert NEUTRAL_CATEGORY in row.detail and "pregnan" not in row.detail
    assert "110101199003071233" not in row.detail  # redacted like every logged reason


def test_a_letter_from_a_service_before_the_census_headers_is_still_counted() -> None:
    row = letter(
        {"dlq_reason": "KeyError: 'x'", "dlq_consumer": "verification-0"},
        "vital.correction.v1.dlq",
        0,
        5,
        1_764_583_200_000,
    )
    assert (row.id, row.service, row.topic, row.reason) == (
        "vital.correction.v1.dlq/0/5",
        "verification-0",
        "vital.correction.v1",
        "KeyError",
    )
    assert row.created_at == dt.datetime.fromtimestamp(1_764_583_200, dt.UTC)
