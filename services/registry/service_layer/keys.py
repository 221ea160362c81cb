"""A jurisdiction's certificate-signing keys (Ed25519): list, create, rotate, revoke, publish (JWKS).

The registry's own routes (``rotate_key``) and the operator's ``exchangectl keys`` both come here,
so a key made or withdrawn from the command line follows the same rules as one made by the
service: one advisory lock per jurisdiction, the overlap window, revocation for good.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.registry.adapters import keys
from services.registry.settings import RegistrySettings
from shared import signing


async def listed(conn: asyncpg.Connection, jurisdiction: str) -> list[dict[str, Any]]:
    """The jurisdiction's published keys (active, retired inside their overlap, revoked), with state."""
    return [
        {**dict(r), "state": keys.key_state(r)}
        for r in await keys.published_keys(conn)
        if r["jurisdiction"] == jurisdiction
    ]


async def new_key(
    conn: asyncpg.Connection, settings: RegistrySettings, jurisdiction: str, *, rotate: bool
) -> str | None:
    """Make a new active key and return its kid; the previous one retires but stays published.

    Without ``rotate`` only a first key is made: None while the jurisdiction has an active one.
    Takes the lock the registry takes before making a first key on demand, so the two cannot race.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "signing-key:" + jurisdiction)
    if not rotate and any(k["state"] == "active" for k in await listed(conn, jurisdiction)):
        return None
    return await keys.create_key(
        conn,
        jurisdiction,
        settings.key_encryption_key.get_secret_value(),
        settings.key_rotation_overlap_days,
    )


async def revoke(conn: asyncpg.Connection, jurisdiction: str, kid: str) -> bytes | None:
    """Withdraw a compromised key for good: it signs nothing more and the JWKS lists it as revoked.

    Returns its public key (for the verification service to refuse it too), None if unknown."""
    return await keys.revoke_key(conn, jurisdiction, kid)


async def jwks(conn: asyncpg.Connection) -> dict[str, Any]:
    """Public signing keys: active ones, retired ones inside their overlap window, revoked ones."""
    rows = await keys.published_keys(conn)
    return {
        "keys": [
            signing.jwk(
                r["kid"],
                bytes(r["public_key"]),
                jurisdiction=r["jurisdiction"],
                status=keys.key_state(r),
                expires_at=r["expires_at"].isoformat() if r["expires_at"] else None,
            )
            for r in rows
        ]
    }


async def rotate_key(conn: asyncpg.Connection, settings: RegistrySettings, here: str) -> dict[str, Any]:
    """Make a new signing key for the jurisdiction; the old one stays published for the overlap window."""
    kid = await new_key(conn, settings, here, rotate=True)
    return {"jurisdiction": here, "active_kid": kid, **await jwks(conn)}
