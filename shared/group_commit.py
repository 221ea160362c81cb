"""Group commit: concurrent requests queue their work, and one task writes what is queued
together, so requests share a transaction and a commit instead of paying one each.

Used by verification (its audit entries and checks) and by the registry (single moves recorded
as one batch). The task takes what is queued (``linger`` seconds after the first item woke it,
at once when ``max_batch`` are already waiting), at most ``max_batch`` at a time, up to ``slots``
batches at a time; each submitter is answered when its batch is written.

The task is started by ``start`` in the context that owns it (a service's lifespan), so the
writes run outside any request's context: a request's trace, for instance, travels in its item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class GroupCommit(Generic[T, R]):
    """Items queued by concurrent requests and written together by ``write``, which gets a batch
    and returns one result per item, in order; each submitter gets its own result, or the
    batch's error.

    Up to ``slots`` batches are written side by side: a request waits for one commit, not for
    the one before it as well. While every slot is busy, items gather into the next, larger
    batch; an idle system (``linger`` 0) writes a lone item at once.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        name: str,
        linger: float,
        max_batch: int,
        slots: int,
        written: Callable[[], None] | None = None,
    ):
        self._write = write
        self.name = name
        self.linger = linger
        self.max_batch = max_batch
        self._written = written
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(slots)
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            await cancel(self._task)
            self._task = None
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        while self._pending:
            await self._flush(self._take())

    async def submit(self, item: T) -> R:
        """Queue an item and return its result once its batch committed (raises if it failed)."""
        if self._task is None or self._task.done():
            raise RuntimeError(f"{self.name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._pending) < self.max_batch and self.linger > 0:
                # Linger a moment so concurrent requests share this commit (a plain sleep: a
                # wait_for on "full" costs a task and a timer per batch, and full batches are rare).
                await asyncio.sleep(self.linger)
            await self._slots.acquire()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._flush_in_slot(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if not self._pending:
            self._wake.clear()
        return batch

    async def _flush_in_slot(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            await self._flush(batch)
        finally:
            self._slots.release()

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if not batch:
            return
        try:
            results = await self._write([item for item, _ in batch])
        except Exception as e:
            log.warning(
                "group write failed",
                extra={"batch": self.name, "error": type(e).__name__, "items": len(batch)},
            )
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        if self._written is not None:
            self._written()
