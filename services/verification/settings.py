"""Verification service configuration (environment variables)."""

from __future__ import annotations

from shared.settings import BaseServiceSettings


class VerificationSettings(BaseServiceSettings):
    service_name: str = "verification"
    port: int = 8020
    consumer_group: str = "verification"
    rate_limit_per_minute: int = 6000
