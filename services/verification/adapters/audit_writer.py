"""Group commit of audit entries, then chaining, so verifications do not queue behind one lock.

Step 1, on the request path: each request queues its entry; one task per process takes whatever
is queued (``flush_interval`` seconds after the first entry woke it, at once when ``max_batch``
are already waiting, and at most ``max_batch`` a statement) and inserts it into
``audit_pending`` with one statement, up to ``concurrent_flushes`` batches at a time (default one:
side-by-side batches showed no gain measurable on the shared bench machine); requests
are answered once their batch committed. Processes and batches insert side by side, and
PostgreSQL group-commits their WAL flushes.

Step 2, off the request path: a chainer moves pending entries into the hash-chained
``audit_log`` with ``shared.audit.append``, deleting them in the same transaction. A
transaction-level try-lock lets one process chain at a time (the others skip the round), and
``audit.append`` keeps the chain linear in any case.

Crash semantics: an answer is sent only after its entry is durable (pending or chained). A crash
loses only entries of requests that had not been answered (their clients see a dropped
connection); pending entries are chained by whichever process runs next. If the insert fails,
every request of the batch fails with it (503 at the edge) rather than answering unaudited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import orjson

from shared import audit

log = logging.getLogger(__name__)

_CHAIN_LOCK = 0x76636861  # try-lock: one chainer at a time per database


class AuditWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        flush_interval: float = 0.001,
        max_batch: int = 512,
        chain_interval: float = 0.05,
        chain_batch: int = 5000,
        concurrent_flushes: int = 1,
    ):
        self.pool = pool
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.chain_interval = chain_interval
        self.chain_batch = chain_batch
        self._pending: list[tuple[audit.AuditEntry, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._chain_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Pending entries carry no chain yet, so batches may commit side by side: a request
        # waits for one commit, not for the one before it as well. While every slot is busy,
        # entries gather into the next, larger batch.
        self._slots = asyncio.Semaphore(concurrent_flushes)
        self._in_flight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="audit-writer"),
            asyncio.create_task(self._chain_forever(), name="audit-chainer"),
        ]

    async def stop(self) -> None:
        """Flush what is queued and chain what is pending, then stop."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        while self._pending:
            await self._flush(self._take())
        with contextlib.suppress(Exception):
            while await chain_pending(self.pool, self.chain_batch):
                pass

    async def record(self, entry: audit.AuditEntry) -> None:
        """Queue an entry and return once it is durable (raises if the insert failed)."""
        if not self._tasks or self._tasks[0].done():
            raise RuntimeError("the audit writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._pending) < self.max_batch and self.flush_interval > 0:
                # Linger a moment so concurrent requests share this commit (a plain sleep: a
                # wait_for on "full" costs a task and a timer per batch, and full batches are rare).
                await asyncio.sleep(self.flush_interval)
            await self._slots.acquire()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._flush_in_slot(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def _take(self) -> list[tuple[audit.AuditEntry, asyncio.Future[None]]]:
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if not self._pending:
            self._wake.clear()
        return batch

    async def _flush_in_slot(self, batch: list[tuple[audit.AuditEntry, asyncio.Future[None]]]) -> None:
        try:
            await self._flush(batch)
        finally:
            self._slots.release()

    async def _flush(self, batch: list[tuple[audit.AuditEntry, asyncio.Future[None]]]) -> None:
        if not batch:
            return
        entries = [entry for entry, _ in batch]
        try:
            await insert_pending(self.pool, entries)
        except Exception as e:
            log.warning("audit insert failed", extra={"error": type(e).__name__, "entries": len(batch)})
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)
        self._chain_wake.set()

    async def _chain_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._chain_wake.wait(), self.chain_interval)
            self._chain_wake.clear()
            await asyncio.sleep(self.chain_interval)  # gather a batch worth chaining
            try:
                while await chain_pending(self.pool, self.chain_batch) >= self.chain_batch:
                    pass
            except Exception as e:  # the next round retries; entries stay pending and durable
                log.warning("audit chaining failed", extra={"error": type(e).__name__})


async def insert_pending(pool: asyncpg.Pool, entries: list[audit.AuditEntry]) -> None:
    """One statement, one round trip: the request path's only write."""
    await pool.execute(
        """INSERT INTO audit_pending (at, client_id, action, purpose, subject, detail)
           SELECT at, c, a, p, s, d::jsonb
           FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                AS u(at, c, a, p, s, d)""",
        [e.at for e in entries],
        [e.client_id for e in entries],
        [e.action for e in entries],
        [e.purpose for e in entries],
        [e.subject for e in entries],
        [orjson.dumps(e.detail).decode() for e in entries],
    )


async def chain_pending(pool: asyncpg.Pool, limit: int) -> int:
    """Move up to ``limit`` pending entries into the hash chain; 0 if another process is at it."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _CHAIN_LOCK):
            return 0
        rows = await conn.fetch(
            """DELETE FROM audit_pending WHERE id IN (SELECT id FROM audit_pending ORDER BY id LIMIT $1)
               RETURNING *""",
            limit,
        )
        rows = sorted(rows, key=lambda r: r["id"])
        await audit.append(
            conn,
            [
                audit.AuditEntry(
                    r["client_id"], r["action"], r["purpose"], r["subject"], r["detail"], r["at"]
                )
                for r in rows
            ],
        )
        return len(rows)
