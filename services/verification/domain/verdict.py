"""The verdict on a presented certificate and what each purpose may see. Pure rules."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any, Literal

Result = Literal["valid", "expired", "revoked", "holder_mismatch", "not_found"]
Purpose = Literal["arrival_registration", "maternal_care_services", "benefits", "identity_check"]

# Field-level disclosure per purpose: the minimum each service needs. Never pregnancy data.
DISCLOSURE: dict[str, tuple[str, ...]] = {
    "arrival_registration": ("holder_name", "marital_status", "children_count"),
    "maternal_care_services": ("holder_name", "children_count"),
    "benefits": ("holder_name", "marital_status", "children_count", "valid_until"),
    "identity_check": (),
}


def verdict(cert: dict[str, Any] | None, presented_subject: str, today: dt.date) -> Result:
    if cert is None:
        return "not_found"
    if not hmac.compare_digest(cert["holder_subject"], presented_subject):
        return "holder_mismatch"
    if cert.get("revoked_on") is not None:
        return "revoked"
    if cert["valid_until"] < today:
        return "expired"
    return "valid"


def disclosed(cert: dict[str, Any], result: Result, purpose: str) -> dict[str, Any]:
    """Attributes the purpose allows, and only for a certificate that belongs to the presenter."""
    if result in ("not_found", "holder_mismatch"):
        return {}
    return {f: cert[f] for f in DISCLOSURE[purpose]}
