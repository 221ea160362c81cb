"""Verification service configuration (environment variables)."""

from __future__ import annotations

import logging

from pydantic import Field, SecretStr, model_validator

from shared.consumer_admission import trust_list
from shared.settings import BaseServiceSettings
from shared.trust import bound_key_url

log = logging.getLogger(__name__)


class VerificationSettings(BaseServiceSettings):
    service_name: str = "verification"
    port: int = 8020
    consumer_group: str = "verification"

    # Per client and per process (each replica limits on its own).
    rate_limit_per_minute: int = 6000
    rate_limit_burst: int = 1000

    # Issuer keys come only from a source bound to the issuer: the trust list's key_url of each
    # division, or entries here binding divisions to a URL ("320412=https://a/v1/keys,
    # 440703+110101=https://b/v1/keys"). A document's keys for any other issuer are ignored;
    # certificate events never teach a key. Fetched at start and every refresh.
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
    status_list_validity_seconds: int = Field(
        default=86_400, description="a list's maximum age: kiosks refuse to use it after this"
    )
    status_list_ttl_seconds: int = Field(default=300, description="how often kiosks should fetch it again")
    # Retention (shared.retention): a correction kept ahead of a certificate that never came.
    retention_correction_ahead_days: float = Field(default=30.0, gt=0)

    # The address others reach this service at; a status list token names itself by it (its
    # ``sub``, the ``uri`` certificates reference). Unset: the address the request came to.
    public_url: str | None = None

    @model_validator(mode="after")
    def _status_list_key_from_a_secret(self) -> VerificationSettings:
        if self.environment == "production" and self.status_list_signing_key is None:
            raise ValueError("STATUS_LIST_SIGNING_KEY must come from a Secret in production")
        return self

    @property
    def key_urls(self) -> list[str]:
        return list(self.key_sources)

    @property
    def key_sources(self) -> dict[str, frozenset[str]]:
        """Key URL -> the divisions whose keys it may speak for (trust list, then settings)."""
        sources: dict[str, set[str]] = {}
        if self.trust_list_file:
            for code, url in trust_list(self.trust_list_file).key_urls().items():
                try:
                    sources.setdefault(bound_key_url(url, self.environment), set()).add(code)
                except ValueError:
                    log.error("trust list: key_url refused", extra={"division": code})
        for codes, url in _bindings(self.registry_key_urls):
            sources.setdefault(url, set()).update(codes)
        return {url: frozenset(codes) for url, codes in sources.items()}

    @model_validator(mode="after")
    def _key_urls_bound(self) -> VerificationSettings:
        for _, url in _bindings(self.registry_key_urls):
            bound_key_url(url, self.environment)  # raises: https outside the cluster
        return self

    def consumer_name(self, generation: int) -> str:
        """The consumer group and inbox name of a replay generation (0 keeps the plain name)."""
        return self.consumer_group if generation == 0 else f"{self.consumer_group}-g{generation}"


def _bindings(value: str) -> list[tuple[list[str], str]]:
    """``REGISTRY_KEY_URLS`` entries: the divisions each URL is bound to."""
    out = []
    for item in value.split(","):
        if not item.strip():
            continue
        codes, sep, url = item.strip().partition("=")
        if not sep or not all(c.strip().isdigit() and len(c.strip()) == 6 for c in codes.split("+")):
            raise ValueError("REGISTRY_KEY_URLS entries bind divisions to a URL: 320412[+110101]=https://...")
        out.append(([c.strip() for c in codes.split("+")], url.strip()))
    return out
