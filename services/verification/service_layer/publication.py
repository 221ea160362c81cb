"""What offline kiosks download: every issuer's keys and signed revocation status lists."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import asyncpg

from services.verification.adapters import repository as repo
from services.verification.adapters.keys import PublishedKey, StatusListSigner
from services.verification.domain import status_list as tsl
from shared import signing
from shared.offline_verifier import STATUS_LIST_PURPOSE, encode_bitstring

log = logging.getLogger(__name__)

STATUS_LIST_ISSUER = "urn:migrant-exchange:verification"


async def jwks(conn: asyncpg.Connection | asyncpg.Pool, signer: StatusListSigner) -> dict[str, Any]:
    """Every issuer's current and previous public keys, and the key that signs status lists."""
    keys = [
        signing.jwk(
            r["kid"],
            bytes(r["public_key"]),
            jurisdiction=r["issuer"],
            purpose="certificate",
            status=r["status"],
            expires_at=r["expires_at"].isoformat() if r["expires_at"] else None,
        )
        for r in await repo.published_keys(conn)
    ]
    keys.append(
        signing.jwk(
            signer.kid, signer.public_raw, jurisdiction=None, purpose=STATUS_LIST_PURPOSE, status="active"
        )
    )
    return {"keys": keys}


async def status_list(
    conn: asyncpg.Connection | asyncpg.Pool, issuer: str, signer: StatusListSigner, validity: int
) -> dict[str, Any]:
    """The issuer's revocation bitstring as a BitstringStatusListCredential, signed (compact JWS)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    list_id = f"urn:migrant-exchange:status-list:{issuer}"
    credential = {
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": list_id,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": STATUS_LIST_ISSUER,
        "validFrom": now.isoformat(),
        "validUntil": (now + dt.timedelta(seconds=validity)).isoformat(),
        "credentialSubject": {
            "id": list_id + "#list",
            "type": "BitstringStatusList",
            "statusPurpose": "revocation",
            "jurisdiction": issuer,
            "encodedList": encode_bitstring(await repo.revoked_indices(conn, issuer)),
            # Keys the issuer revoked: an offline kiosk refuses tokens under them even while it
            # still holds them from an older key download.
            "revokedKeys": await repo.revoked_kids(conn, issuer),
        },
    }
    return {
        "issuer": issuer,
        "credential": credential,
        "jws": signing.sign(credential, signer.key, signer.kid),
    }


async def status_list_token(
    conn: asyncpg.Connection | asyncpg.Pool,
    issuer: str,
    signer: StatusListSigner,
    *,
    uri: str,
    validity: int,
    ttl: int,
) -> str:
    """The issuer's revocations as an IETF Token Status List (``application/statuslist+jwt``)."""
    claims = tsl.claims(
        uri=uri,
        jurisdiction=issuer,
        revoked=await repo.revoked_indices(conn, issuer),
        issued_at=int(dt.datetime.now(dt.UTC).timestamp()),
        validity=validity,
        ttl=ttl,
        revoked_keys=await repo.revoked_kids(conn, issuer),
    )
    return signer.sign_typed(claims, tsl.JWT_TYP)


async def learn_registry_keys(
    conn: asyncpg.Connection, source: str, keys: list[PublishedKey]
) -> dict[str, int]:
    """Record what a registry publishes now; keys it no longer publishes are withdrawn."""
    counts: dict[str, int] = {}
    for k in keys:
        if k.status == "revoked":  # the issuer withdrew it: refuse it from now on, whatever comes later
            outcome = await refuse_key(
                conn, kid=k.kid, issuer=k.issuer, public_key=k.public_key, source=source
            )
            counts[outcome] = counts.get(outcome, 0) + 1
            continue
        outcome = await repo.learn_key(
            conn,
            kid=k.kid,
            issuer=k.issuer,
            public_key=k.public_key,
            source=source,
            status=k.status,
            expires_at=k.expires_at,
        )
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "conflict":
            log.warning("registry publishes a different key under a known kid", extra={"kid": k.kid})
    await repo.withdraw_missing(conn, source, [k.kid for k in keys])
    return counts


async def refuse_key(
    conn: asyncpg.Connection, *, kid: str, issuer: str, public_key: bytes, source: str
) -> str:
    """Refuse every token under a key its issuer revoked, from now on, known here or not; final.

    Learned from the issuer's JWKS, or told at once by the operator (``exchangectl keys revoke``).
    Returns 'revoked', or 'conflict' when another key is held under that kid (nothing changes)."""
    return await repo.revoke_key(conn, kid=kid, issuer=issuer, public_key=public_key, source=source)
