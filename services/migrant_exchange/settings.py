"""Migrant exchange configuration (environment variables)."""

from __future__ import annotations

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
