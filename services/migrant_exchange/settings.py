"""Migrant exchange configuration (environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import BaseServiceSettings


class ExchangeSettings(BaseServiceSettings):
    service_name: str = "migrant_exchange"
    port: int = 8010
    # Default feedback deadline when an agreement names none (7 days).
    feedback_deadline_seconds: float = 7 * 24 * 3600
    overdue_sweep_interval: float = 1.0
    consumer_group: str = "migrant-exchange"

    # YAML list of agreements {division_a, division_b, event_types, deadline_seconds, visible_fields}.
    # Without one, development and test run under a single all-permitting agreement.
    agreements_file: str | None = None

    # A notification without feedback is sent again after this delay, doubling up to the cap.
    notification_retry_seconds: float = 60.0
    notification_retry_cap_seconds: float = 3600.0
    notification_max_attempts: int = 5

    # An event that arrives before its predecessor (same subject and source) waits this long.
    sequence_gap_seconds: float = 300.0

    # Retention (shared.retention): an answered notification's payload (applied: purged at once;
    # conflict or rejected: kept this long after the answer for the operator's repair), an
    # unanswered one's (overdue at its deadline, sent no more: kept this long after the deadline
    # for a late answer or pick-up; the notification stays, overdue), and an event still parked
    # this long after it arrived (its gap was released long ago).
    retention_notification_payload_days: float = Field(default=30.0, gt=0)
    retention_unanswered_payload_days: float = Field(default=30.0, gt=0)
    retention_parked_event_days: float = Field(default=30.0, gt=0)

    # Registries the exchange reconciles: "320412=http://host:8001,440703=http://host:8002".
    registry_urls: str = ""
    # Bearer credential the exchange presents to registries: a client of kind ``service`` holding
    # ``reconcile:internal`` (the registries refuse an operator's token there).
    registry_token: SecretStr | None = None
    reconciliation_buckets: int = Field(default=4096, ge=1, le=65536)
    # Seconds between scheduled reconciliations of every agreed pair; 0 turns the schedule off.
    reconciliation_interval_seconds: float = 0.0
    reconciliation_timeout_seconds: float = 120.0

    # The operations page (``GET /dashboard``, ``GET /v1/stream``): sampling pace, ``DASHBOARD_*``.
    dashboard_interval: float = 1.0  # seconds between samples
    dashboard_flows_every: int = 2  # samples between flow-matrix refreshes
    dashboard_indicators_every: int = 5
    dashboard_period_hours: float = 24.0
    dashboard_group_lag_interval: float = 5.0  # seconds between reads of every group's offsets
    # Where its early warnings start (``service_layer.indicators.Thresholds``, same names).
    dashboard_overdue_notifications: int = 1
    dashboard_oldest_open_seconds: float = 300.0
    dashboard_consumer_lag: int = 1000
    dashboard_outbox_age_seconds: float = 30.0
    dashboard_dead_letters: int = 1
    dashboard_timely_feedback_rate: float = 0.95
    dashboard_reconciliation_accuracy: float = 0.99

    @property
    def registries(self) -> dict[str, str]:
        """Division code -> base URL of the registry that keeps its records."""
        out: dict[str, str] = {}
        for item in self.registry_urls.split(","):
            code, _, url = item.strip().partition("=")
            if code and url:
                out[code.strip()] = url.strip().rstrip("/")
        return out
