"""The outbox relay's leadership: one replica per database publishes, which keeps per-subject order.

Leadership is a session-level advisory lock taken by a connection of its own (which also LISTENs
for the outbox's NOTIFY). PostgreSQL keeps the lock exactly as long as that session lives, and
only the session could release it: when the connection dies (``idle_session_timeout``, a proxy,
the network, ``pg_terminate_backend``) the lock is free and a standby takes it. So the leader
must not trust having taken it once: a termination listener says at once that the connection
closed, and ``check`` (before every batch) asks the session, at most once a second, whether it
still answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg

from shared.outbox import NOTIFY_CHANNEL

RELAY_LOCK = 0x6F7574  # the advisory lock's key
STANDBY_POLL_SECONDS = 2.0  # how often a standby tries the lock
# A relay that lost the lock waits this long before it contends again: a standby that has been
# polling takes it first (whatever cut this relay's session may cut it again).
STAND_BACK_SECONDS = 2 * STANDBY_POLL_SECONDS
_CHECK_SECONDS = 1.0  # the session is asked at most this often whether it answers
_CHECK_TIMEOUT = 2.0


class LeadershipLost(Exception):
    """The lock's connection closed or stopped answering: the lock may be another replica's now."""


class RelayLock:
    """The lock of one relay: ``hold`` waits until this replica leads, ``check`` before each batch."""

    def __init__(self, dsn: str, on_lost: Callable[[], None]) -> None:
        self._dsn = dsn
        self._on_lost = on_lost  # called as soon as the lock's connection closes
        self._conn: asyncpg.Connection | None = None
        self._checked = 0.0  # when the session last answered (loop time)

    async def hold(self, on_notify: Callable[[], None]) -> None:
        """Connect and wait until this session holds the lock (meanwhile another replica relays);
        then call ``on_notify`` on every NOTIFY of the outbox."""
        conn = await asyncpg.connect(self._dsn)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                await asyncio.sleep(STANDBY_POLL_SECONDS)
            conn.add_termination_listener(self._closed)
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: on_notify())
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        self._conn, self._checked = conn, asyncio.get_running_loop().time()

    def _closed(self, conn: asyncpg.Connection) -> None:
        if conn is self._conn:
            self._on_lost()

    async def check(self) -> None:
        """Raise ``LeadershipLost`` unless the lock's session is open and (asked at most every
        ``_CHECK_SECONDS``) answers within ``_CHECK_TIMEOUT``. A live session keeps its lock."""
        conn = self._conn
        if conn is None or conn.is_closed():
            raise LeadershipLost("the relay lock's connection is closed")
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked < _CHECK_SECONDS:
            return
        try:
            await conn.fetchval("SELECT 1", timeout=_CHECK_TIMEOUT)
        except Exception as e:
            raise LeadershipLost(f"the relay lock's connection does not answer ({type(e).__name__})") from e
        self._checked = loop.time()

    async def release(self) -> None:
        """Close the lock's connection (its session ends and the lock with it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
