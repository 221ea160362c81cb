"""Verification service configuration (environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.settings import BaseServiceSettings


class VerificationSettings(BaseServiceSettings):
    service_name: str = "verification"
    port: int = 8020
    consumer_group: str = "verification"

    # Per client and per process (each replica limits on its own).
    rate_limit_per_minute: int = 6000
    rate_limit_burst: int = 1000

    # Issuer keys: registries' JWKS URLs (comma-separated), fetched at start and every refresh.
    # Keys also arrive with certificate.issued.v1 (public_key_jwk), so either source is enough.
    registry_key_urls: str = ""
    key_refresh_seconds: float = 60.0

    # Group commit of the audit log: a verification answers only after its entry is committed
    # (to audit_pending); the chainer then moves entries into the hash chain.
    audit_flush_interval: float = Field(default=0.001, description="seconds a batch waits for company")
    audit_batch_max: int = 512
    audit_chain_interval: float = Field(default=0.05, description="seconds between chaining rounds")
    audit_concurrent_flushes: int = Field(default=1, ge=1, description="pending batches committing at once")

    # Status lists: signed with this Ed25519 key (base64url of the 32 raw bytes), from a
    # Kubernetes Secret; production refuses to start without one. Elsewhere, when none is
    # configured, one is generated once and kept in this service's database.
    status_list_signing_key: SecretStr | None = None
    status_list_validity_seconds: int = 86_400

    @model_validator(mode="after")
    def _status_list_key_from_a_secret(self) -> VerificationSettings:
        if self.environment == "production" and self.status_list_signing_key is None:
            raise ValueError("STATUS_LIST_SIGNING_KEY must come from a Secret in production")
        return self

    @property
    def key_urls(self) -> list[str]:
        return [u.strip() for u in self.registry_key_urls.split(",") if u.strip()]

    def consumer_name(self, generation: int) -> str:
        """The consumer group and inbox name of a replay generation (0 keeps the plain name)."""
        return self.consumer_group if generation == 0 else f"{self.consumer_group}-g{generation}"
