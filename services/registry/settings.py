"""Registry configuration (environment variables, see shared.settings for the common ones)."""

from __future__ import annotations

from pydantic import SecretStr, field_validator, model_validator

from shared.identity import check_division
from shared.settings import BaseServiceSettings

DEV_KEY_ENCRYPTION_KEY = "dev-only-key-encryption-key-change-me"


class RegistrySettings(BaseServiceSettings):
    service_name: str = "registry"
    port: int = 8001
    # The jurisdictions this instance is the system of record for (JURISDICTIONS=320412,440703).
    jurisdictions: str = "320412"
    key_encryption_key: SecretStr = SecretStr(DEV_KEY_ENCRYPTION_KEY)
    # Clients inline (YAML/JSON list, same entries as CLIENTS_FILE: hashes only) for demos and tests.
    clients_inline: str | None = None
    certificate_validity_days: int = 180
    key_rotation_overlap_days: int = 400
    # Where the verification service publishes status lists: certificates reference
    # <this>/<issuer> as their IETF Token Status List (``status.status_list.uri``).
    status_list_base_url: str = "http://127.0.0.1:8020/v1/status-lists"
    # The agreements file the exchange runs under (shared.agreements): a counterpart reads a
    # person only under an agreement, and sees what it would have been notified of. Without one,
    # development and test run under a single all-permitting agreement; production under none.
    agreements_file: str | None = None

    @field_validator("jurisdictions")
    @classmethod
    def _known_divisions(cls, value: str) -> str:
        codes = [c.strip() for c in value.split(",") if c.strip()]
        if not codes:
            raise ValueError("JURISDICTIONS must name at least one division code")
        for code in codes:
            check_division(code)
        return ",".join(codes)

    @model_validator(mode="after")
    def _refuse_dev_key(self) -> RegistrySettings:
        if (
            self.environment == "production"
            and self.key_encryption_key.get_secret_value() == DEV_KEY_ENCRYPTION_KEY
        ):
            raise ValueError("KEY_ENCRYPTION_KEY must be set outside development")
        return self

    @property
    def served(self) -> frozenset[str]:
        return frozenset(self.jurisdictions.split(","))

    @property
    def consumer_group(self) -> str:
        return "registry-" + "-".join(sorted(self.served))
