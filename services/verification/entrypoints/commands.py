"""Operator command: prove the audit chain intact (rebuilding the read model: ``exchangectl replay verification``)."""

from __future__ import annotations

import asyncio

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


def main(command: str, settings: VerificationSettings) -> int:
    return asyncio.run(audit_verify(settings))
