"""The verdict on a presented certificate and what each purpose may see. Pure rules."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any, Literal

from shared.offline_verifier import PURPOSE_ATTRIBUTES, attributes_for

Result = Literal["valid", "expired", "revoked", "holder_mismatch", "not_found"]
TokenResult = Literal["valid", "expired", "revoked", "holder_mismatch", "invalid_signature"]
Purpose = Literal["arrival_registration", "maternal_care_services", "benefits", "identity_check"]

# Field-level disclosure per purpose (shared with the offline verifier, so kiosks disclose alike).
DISCLOSURE = PURPOSE_ATTRIBUTES


def verdict(cert: dict[str, Any] | None, presented_subject: str, today: dt.date) -> Result:
    """Not found, then holder, then revocation, then expiry: a stranger learns nothing more."""
    if cert is None:
        return "not_found"
    if not hmac.compare_digest(cert["holder_subject"], presented_subject):
        return "holder_mismatch"
    if cert.get("revoked_on") is not None:
        return "revoked"
    if cert["valid_until"] < today:
        return "expired"
    return "valid"


def disclosed(cert: dict[str, Any], result: str, purpose: str) -> dict[str, Any]:
    """Attributes the purpose allows, and only for a certificate that belongs to the presenter."""
    if result in ("not_found", "holder_mismatch", "invalid_signature"):
        return {}
    return {f: cert[f] for f in DISCLOSURE[purpose]}


def token_verdict(
    claims: dict[str, Any],
    cert: dict[str, Any] | None,
    revoked: bool,
    presented_subject: str | None,
    today: dt.date,
) -> TokenResult:
    """A genuinely signed token: holder (if presented), then revocation, then expiry.

    ``cert`` is the read model's row when it has one (corrections apply); the signature alone
    proves the certificate genuine when the read model has not seen it yet.
    """
    if presented_subject is not None and not hmac.compare_digest(str(claims.get("sub")), presented_subject):
        return "holder_mismatch"
    if revoked or (cert is not None and cert.get("revoked_on") is not None):
        return "revoked"
    valid_until = cert["valid_until"] if cert else dt.date.fromisoformat(str(claims["exp"]))
    if valid_until < today:
        return "expired"
    return "valid"


def token_attributes(
    claims: dict[str, Any], cert: dict[str, Any] | None, result: str, purpose: str
) -> dict[str, Any]:
    """What the purpose may see: from the read model when it knows the certificate, else the token."""
    if result in ("holder_mismatch", "invalid_signature"):
        return {}
    if cert is not None:
        return disclosed(cert, result, purpose)
    return attributes_for(claims, purpose)
