"""Issuer keys from registries' JWKS URLs, and this service's status-list signing key."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.verification.adapters import repository as repo
from shared import signing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishedKey:
    kid: str
    issuer: str
    public_key: bytes
    status: str
    expires_at: dt.datetime | None


def parse_jwks(document: Any) -> list[PublishedKey]:
    """The Ed25519 keys of a registry's JWKS; entries of other kinds or without a jurisdiction are skipped."""
    found = []
    for k in (document or {}).get("keys", []) if isinstance(document, dict) else []:
        try:
            if k.get("kty") != "OKP" or k.get("crv") != "Ed25519" or not k.get("jurisdiction"):
                continue
            raw = signing.b64u_decode(k["x"])
            if len(raw) != 32:
                continue
            expires = k.get("expires_at")
            found.append(
                PublishedKey(
                    kid=str(k["kid"]),
                    issuer=str(k["jurisdiction"]),
                    public_key=raw,
                    status=k.get("status") if k.get("status") in ("retired", "revoked") else "active",
                    expires_at=dt.datetime.fromisoformat(expires.replace("Z", "+00:00")) if expires else None,
                )
            )
        except (KeyError, ValueError, TypeError, AttributeError):
            log.warning("skipping a malformed JWK", extra={"kid": str(k.get("kid"))[:64]})
    return found


async def fetch_jwks(client: httpx.AsyncClient, url: str) -> list[PublishedKey] | None:
    """The keys a registry publishes now, or None when it cannot be reached (keep what we know)."""
    try:
        r = await client.get(url, timeout=5.0)
    except httpx.HTTPError as e:
        log.warning("registry keys unreachable", extra={"url": url, "error": type(e).__name__})
        return None
    if r.status_code != 200:
        log.warning("registry keys unavailable", extra={"url": url, "status": r.status_code})
        return None
    try:
        return parse_jwks(r.json())
    except ValueError:
        return None


@dataclass(frozen=True)
class StatusListSigner:
    kid: str
    key: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return signing.public_bytes(self.key)

    def sign_typed(self, claims: dict[str, Any], typ: str) -> str:
        """A compact JWS whose header names its type (``typ``), as typed JWTs must."""
        header = signing.b64u(orjson.dumps({"alg": "EdDSA", "kid": self.kid, "typ": typ}))
        payload = signing.b64u(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
        signature = self.key.sign(f"{header}.{payload}".encode())
        return f"{header}.{payload}.{signing.b64u(signature)}"


def _kid_of(public_raw: bytes) -> str:
    # A thumbprint-like id: the same key always has the same kid across replicas.
    return "status-" + hashlib.sha256(public_raw).hexdigest()[:16]


async def load_signer(pool: asyncpg.Pool, configured: bytes | None) -> StatusListSigner:
    """The configured key, else the one kept in the database, else a new one (development only)."""
    if configured is not None:
        key = Ed25519PrivateKey.from_private_bytes(configured)
        return StatusListSigner(_kid_of(signing.public_bytes(key)), key)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('verification-status-list-key'))")
        row = await repo.status_list_key(conn)
        if row is None:
            key = signing.new_private_key()
            public = signing.public_bytes(key)
            await repo.store_status_list_key(conn, _kid_of(public), signing.private_bytes(key), public)
            return StatusListSigner(_kid_of(public), key)
    return StatusListSigner(row["kid"], Ed25519PrivateKey.from_private_bytes(bytes(row["private_key"])))
