"""Signing keys of each jurisdiction, stored wrapped with the key-encryption key (AES-GCM)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import signing


def _aead(kek: str) -> AESGCM:
    return AESGCM(hashlib.sha256(kek.encode()).digest())


def wrap(private_raw: bytes, kek: str, kid: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + _aead(kek).encrypt(nonce, private_raw, kid.encode())


def unwrap(blob: bytes, kek: str, kid: str) -> bytes:
    return _aead(kek).decrypt(blob[:12], blob[12:], kid.encode())


async def create_key(conn: asyncpg.Connection, jurisdiction: str, kek: str, overlap_days: int) -> str:
    """Make a new active key; the previous one is retired but stays published for ``overlap_days``."""
    key = signing.new_private_key()
    kid = f"{jurisdiction}-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-{os.urandom(3).hex()}"
    await conn.execute(
        # A retired key stays published for the overlap window, and at least as long as the last
        # certificate it signed is valid, so every certificate keeps verifying until it expires.
        """UPDATE signing_keys k SET retired_at = now(),
                  expires_at = greatest(now() + make_interval(days => $2),
                                        (SELECT max(c.valid_until) + 1 FROM certificates c WHERE c.key_id = k.kid))
           WHERE jurisdiction = $1 AND retired_at IS NULL""",
        jurisdiction,
        overlap_days,
    )
    await conn.execute(
        "INSERT INTO signing_keys (kid, jurisdiction, public_key, private_key) VALUES ($1,$2,$3,$4)",
        kid,
        jurisdiction,
        signing.public_bytes(key),
        wrap(signing.private_bytes(key), kek, kid),
    )
    return kid


async def active_key(
    conn: asyncpg.Connection, jurisdiction: str, kek: str, overlap_days: int
) -> tuple[str, Ed25519PrivateKey]:
    row = await conn.fetchrow(
        "SELECT kid, private_key FROM signing_keys WHERE jurisdiction = $1 AND retired_at IS NULL",
        jurisdiction,
    )
    if row is None:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "signing-key:" + jurisdiction)
        row = await conn.fetchrow(
            "SELECT kid, private_key FROM signing_keys WHERE jurisdiction = $1 AND retired_at IS NULL",
            jurisdiction,
        )
        if row is None:
            await create_key(conn, jurisdiction, kek, overlap_days)
            return await active_key(conn, jurisdiction, kek, overlap_days)
    raw = unwrap(bytes(row["private_key"]), kek, row["kid"])
    return row["kid"], Ed25519PrivateKey.from_private_bytes(raw)


async def published_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Active keys, retired keys still inside their overlap window, and revoked keys (to be refused)."""
    return await conn.fetch(  # type: ignore[no-any-return]
        """SELECT kid, jurisdiction, public_key, created_at, retired_at, expires_at, revoked_at
           FROM signing_keys WHERE revoked_at IS NOT NULL OR expires_at IS NULL OR expires_at > now()
           ORDER BY jurisdiction, created_at"""
    )


async def revoke_key(conn: asyncpg.Connection, jurisdiction: str, kid: str) -> bytes | None:
    """Withdraw a compromised key for good: it signs nothing more (the next certificate gets a new
    active key) and the JWKS lists it as revoked. Returns its public key, None if unknown."""
    row = await conn.fetchrow(
        """UPDATE signing_keys SET revoked_at = coalesce(revoked_at, now()),
                  retired_at = coalesce(retired_at, now())
           WHERE jurisdiction = $1 AND kid = $2 RETURNING public_key""",
        jurisdiction,
        kid,
    )
    return bytes(row["public_key"]) if row else None


def key_state(row: asyncpg.Record) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    return "active" if row["retired_at"] is None else "retired"
