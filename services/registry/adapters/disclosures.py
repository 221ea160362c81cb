"""SQL of the subject-access log."""

from __future__ import annotations

from typing import Any

import asyncpg


async def disclosures(conn: asyncpg.Connection, subject: str, limit: int) -> list[dict[str, Any]]:
    """The subject-access log of one person, newest first (reported disclosures keep their own time)."""
    rows = await conn.fetch(
        """SELECT seq, at, client_id, action, purpose, detail FROM audit_log
           WHERE subject = $1 ORDER BY at DESC, seq DESC LIMIT $2""",
        subject,
        limit,
    )
    return [dict(r) for r in rows]
