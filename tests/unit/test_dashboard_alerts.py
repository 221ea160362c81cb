"""Early warnings (预警): which thresholds raise what, in words an operator reads from afar."""

from __future__ import annotations

from typing import Any

from services.migrant_exchange.service_layer.indicators import Thresholds, alerts, shown_type
from shared.sensitivity import NEUTRAL_CATEGORY


def _snapshot(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "operations": {
            "notifications": {
                "pending": 3,
                "overdue": 0,
                "oldest_open_seconds": 4.0,
                "oldest_overdue_seconds": 0,
            },
            "dead_letters": {"open": 0, "latest": []},
            "discrepancies": None,
        },
        "lag": [{"group": "g", "topic": "vital.birth.v1", "lag": 10}],
        "outbox": {"backlog": 0, "oldest_age_seconds": 0.0},
        "indicators": {"jurisdictions": [{"jurisdiction": "440703", "timely_feedback_rate": 0.99}]},
    }
    base.update(over)
    return base


def test_a_healthy_system_raises_nothing() -> None:
    assert alerts(_snapshot(), Thresholds()) == []


def test_each_threshold_raises_its_warning_alerts_first() -> None:
    snap = _snapshot(
        lag=[{"group": "migrant-exchange-vital", "topic": "vital.birth.v1", "lag": 5000}],
        outbox={"backlog": 40, "oldest_age_seconds": 95.0},
        indicators={
            "jurisdictions": [
                {"jurisdiction": "440703", "timely_feedback_rate": 0.5, "reconciliation_accuracy": 0.9},
                {"jurisdiction": "320412", "timely_feedback_rate": None, "reconciliation_accuracy": None},
            ]
        },
    )
    snap["operations"]["notifications"].update(
        overdue=2, oldest_overdue_seconds=7300, oldest_open_seconds=7300
    )
    snap["operations"]["dead_letters"]["open"] = 4
    found = alerts(snap, Thresholds())
    codes = [a["code"] for a in found]
    assert codes[:2] == ["overdue", "outbox"] and {a["level"] for a in found[:2]} == {"alert"}
    assert set(codes[2:]) == {"slow-feedback", "lag", "dlq", "feedback-rate", "accuracy"}
    texts = " | ".join(a["text"] for a in found)
    assert "2 notifications overdue, oldest 2.0 h" in texts
    assert "5000 behind on vital.birth.v1" in texts
    assert "440703: timely feedback 50%" in texts
    assert "320412" not in texts  # no data is not a bad rate


def test_thresholds_are_configurable() -> None:
    snap = _snapshot(lag=[{"group": "g", "topic": "t", "lag": 50}])
    assert alerts(snap, Thresholds(consumer_lag=10))[0]["code"] == "lag"


def test_pregnancy_event_types_never_reach_the_dashboard_by_name() -> None:
    assert shown_type("pregnancy.registered.v1") == shown_type("pregnancy.closed.v1") == NEUTRAL_CATEGORY
    assert shown_type("birth.registered.v1") == "birth.registered.v1"
