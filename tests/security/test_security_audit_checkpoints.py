"""Signed checkpoints of the audit chain's head: a chain rewritten by a superuser, then extended
by the service, is neither vouched for by a new checkpoint nor passed by the auditor."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg

from cli.audit_cmd import _verify
from services.verification.settings import VerificationSettings
from shared import audit, signing
from shared.audit_anchor import AuditCheckpointer, read_checkpoint
from shared.db import create_pool, init_connection, migrate
from tests.helpers import rewrite_audit_chain

N = 8


class _Producer:
    """What the checkpointer sends to (the checkpoint topic): the tokens, kept in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append(value.decode())


async def _append(conn: asyncpg.Connection, n: int, start: int) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    async with conn.transaction():
        await audit.append(
            conn,
            [
                audit.AuditEntry(
                    "kiosk-1",
                    "certificate.verify",
                    "benefits",
                    f"{i:032x}",
                    {"result": "revoked"},
                    t0 + dt.timedelta(seconds=i),
                )
                for i in range(start, start + n)
            ],
        )


async def test_a_rewritten_chain_is_not_checkpointed_nor_passed_by_a_later_checkpoint(
    fresh_db: str, tmp_path: Path
) -> None:
    (tmp_path / "none").mkdir()
    await migrate(fresh_db, "audit_test", tmp_path / "none")
    key = signing.b64u(signing.private_bytes(signing.new_private_key()))
    settings = VerificationSettings(database_url=fresh_db, audit_checkpoint_key=key)
    pool = await create_pool(fresh_db, min_size=1, max_size=2)
    conn = await asyncpg.connect(fresh_db)
    await init_connection(conn)
    try:
        await _append(conn, N, 1)
        running, producer = AuditCheckpointer(pool, settings), _Producer()
        assert await running.checkpoint_once(producer) is not None  # the head at N, signed

        await rewrite_audit_chain(conn, 3)
        await _append(conn, 2, N + 1)  # the service goes on appending to the rewritten chain
        assert await audit.verify_chain(conn) is None  # the chain alone cannot see it
        # The process that anchored row N does not sign a head that no longer extends it ...
        assert await running.checkpoint_once(producer) is None
        # ... but a restarted one knows no earlier head and signs what it finds.
        restarted = AuditCheckpointer(pool, settings)
        assert await restarted.checkpoint_once(producer) is not None

        pinned = {running.key.kid: running.key.public_raw}
        found = [read_checkpoint(t, pinned) for t in producer.sent]
        assert [c.seq for c in found] == [N, N + 2]
        [report] = await _verify({"verification": fresh_db}, {"verification": found})
        # The latest checkpoint matches the rewritten chain; the earlier one does not any more.
        assert report["unchanged_through_seq"] == 0
        assert report["intact"] is False
    finally:
        await conn.close()
        await pool.close()
