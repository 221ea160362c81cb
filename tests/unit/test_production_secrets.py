"""Production refuses to start without the keys that must come from Secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.verification.settings import VerificationSettings
from shared.settings import BaseServiceSettings

KEY = "A" * 43  # base64url of 32 bytes
SECRETS = {
    "environment": "production",
    "subject_key_secret": "a-real-secret-of-the-exchange",
    "kafka_security_protocol": "SSL",
    "trust_list_file": "trust-list.yaml",
}


def test_the_audit_checkpoint_key_must_be_configured_in_production() -> None:
    with pytest.raises(ValidationError, match="AUDIT_CHECKPOINT_KEY must come from a Secret in production"):
        BaseServiceSettings(**SECRETS)
    assert BaseServiceSettings(**SECRETS, audit_checkpoint_key=KEY).audit_checkpoint_key is not None
    assert BaseServiceSettings(environment="development").audit_checkpoint_key is None


def test_the_status_list_key_must_be_configured_in_production() -> None:
    with pytest.raises(
        ValidationError, match="STATUS_LIST_SIGNING_KEY must come from a Secret in production"
    ):
        VerificationSettings(**SECRETS, audit_checkpoint_key=KEY)
    configured = VerificationSettings(**SECRETS, audit_checkpoint_key=KEY, status_list_signing_key=KEY)
    assert configured.status_list_signing_key is not None
    assert VerificationSettings(environment="development").status_list_signing_key is None
