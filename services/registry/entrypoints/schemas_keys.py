"""Bodies of the key routes: the published signing keys (JWKS) and a rotation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.registry.entrypoints.schemas_vital_events import _example

JWK: dict[str, Any] = {
    "kty": "OKP",
    "crv": "Ed25519",
    "alg": "EdDSA",
    "use": "sig",
    "kid": "320412-20260101000000-a1b2c3",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    "jurisdiction": "320412",
    "status": "active",
    "expires_at": None,
}


class Jwk(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [JWK]})
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    alg: Literal["EdDSA"]
    use: Literal["sig"]
    kid: str
    x: str = Field(description="the raw public key, base64url")
    jurisdiction: str
    status: Literal["active", "retired", "revoked"] = Field(
        description="revoked: compromised, withdrawn by the jurisdiction; tokens under it must be refused"
    )
    expires_at: str | None = Field(description="retired keys: until when certificates signed by it verify")


class Jwks(BaseModel):
    model_config = _example(keys=[JWK])
    keys: list[Jwk]


class KeyRotationOut(Jwks):
    model_config = _example(jurisdiction="320412", active_kid=JWK["kid"], keys=[JWK])
    jurisdiction: str
    active_kid: str
