"""Operator commands: prove the audit chain intact, rebuild the read model by replay."""

from __future__ import annotations

import asyncio

import asyncpg

from services.verification.settings import VerificationSettings
from shared import audit
from shared.db import create_pool


async def audit_verify(settings: VerificationSettings) -> int:
    """Exit 0 when the chain is intact; otherwise print the first broken row and exit 1."""
    pool = await create_pool(
        settings.database_url, min_size=1, max_size=1
    )  # jsonb decoded as the writer wrote it
    try:
        async with pool.acquire() as conn:
            broken = await audit.verify_chain(conn)
            rows = await conn.fetchval("SELECT count(*) FROM audit_log")
            pending = await conn.fetchval("SELECT count(*) FROM audit_pending")
    finally:
        await pool.close()
    if broken is None:
        print(f"audit chain intact: {rows} rows ({pending} entries waiting to be chained)")
        return 0
    print(f"audit chain broken at seq {broken} (of {rows} rows)")
    return 1


async def rebuild(settings: VerificationSettings) -> int:
    """Empty the read model and start a new replay generation; the service replays on its next start.

    The consumer group and inbox name carry the generation (``verification-g2``), so the new
    group reads every topic from the beginning with no offset surgery on the broker. Keys
    learned from registries' JWKS are kept (the refresher re-confirms them); keys learned from
    events, certificates, revocations and corrections come back with the replay.
    """
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            old = await conn.fetchval("SELECT generation FROM projection_state FOR UPDATE")
            await conn.execute("TRUNCATE certificates, revocations")
            await conn.execute("DELETE FROM issuer_keys WHERE source = 'event'")
            await conn.execute("DELETE FROM inbox WHERE consumer = $1", settings.consumer_name(old))
            generation = await conn.fetchval(
                "UPDATE projection_state SET generation = generation + 1, rebuilt_at = now() RETURNING generation"
            )
    finally:
        await conn.close()
    print(f"read model emptied; restart the service to replay as {settings.consumer_name(generation)}")
    return 0


def main(command: str, settings: VerificationSettings) -> int:
    return asyncio.run(audit_verify(settings) if command == "audit-verify" else rebuild(settings))
