"""Group commit of audit entries: many verifications share one append to the hash chain.

Each request queues its entry and waits for the batch holding it to commit; one task per
process drains the queue every ``flush_interval`` seconds (or at once when ``max_batch``
entries wait) and appends them with ``shared.audit.append`` in one transaction, so the chain
stays linear (the advisory lock orders writers of several processes too).

Crash semantics: an answer is sent only after its entry committed. A crash loses only entries
of requests that had not been answered yet (their clients see a dropped connection and retry);
no verification is ever answered without its audit row. If the append fails, every request of
the batch fails with it (503 at the edge) rather than answering unaudited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from shared import audit

log = logging.getLogger(__name__)


class AuditWriter:
    def __init__(self, pool: asyncpg.Pool, *, flush_interval: float = 0.002, max_batch: int = 512):
        self.pool = pool
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._pending: list[tuple[audit.AuditEntry, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Flush what is queued, then stop."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        while self._pending:
            await self._flush()

    async def record(self, entry: audit.AuditEntry) -> None:
        """Queue an entry and return once it is committed (raises if the append failed)."""
        if self._task is None or self._task.done():
            raise RuntimeError("the audit writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        self._wake.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._pending) < self.max_batch and self.flush_interval > 0:
                # Linger a moment so concurrent requests share this commit.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval)
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if not self._pending:
            self._wake.clear()
            self._full.clear()
        if not batch:
            return
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await audit.append(conn, [entry for entry, _ in batch])
        except Exception as e:
            log.warning("audit append failed", extra={"error": type(e).__name__, "entries": len(batch)})
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        self.flushes += 1
        for _, future in batch:
            if not future.done():
                future.set_result(None)
