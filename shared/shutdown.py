"""A service's shutdown: bounded in time, and saying what it waited for when it overran.

A process asked to stop (SIGTERM from Kubernetes, a deploy, an operator) first lets uvicorn close
its connections, then leaves its lifespan: the service's own resources, the background tasks,
the clients' watch and the database pool, in that order. Each of those waits on something
(a consumer's fetch, a group commit's flush, a connection handed out and not yet returned), and
asyncpg's ``Pool.close`` waits for every connection without limit. One wait that never ends
would hold the process until the orchestrator's SIGKILL, and its log would not say why.

So the steps share one deadline. A step still running at it is named in the log, with every task
still pending and the chain of calls each is suspended in, and the pool's connections are then
closed hard: PostgreSQL rolls back whatever they held, so nothing half-written stays, and the
outbox and the inbox carry every event across the restart as they do across a crash.

What the bound cannot end: a task that swallows every cancellation still holds the process when
``asyncio.run`` cancels what is left at its very end. The orchestrator's kill ends that; the log
has named the task by then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

log = logging.getLogger(__name__)

Step = tuple[str, Callable[[], Awaitable[object]]]


async def stop_tasks(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel background tasks and wait for them to end (``asyncio.wait``: a task that swallows
    its cancellation holds this call, not the caller's own cancellation; ``shut_down`` bounds it)."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    await asyncio.wait(tasks)
    for task in tasks:  # their errors were logged where they happened; retrieved, not re-raised
        if not task.cancelled():
            task.exception()


async def shut_down(steps: Sequence[Step], pool: asyncpg.Pool, timeout: float) -> bool:
    """Run ``steps`` in order within ``timeout`` seconds in all; True if every one ended.

    Each step runs in a task of its own and is waited for without being cancelled by the wait,
    so a step that swallows cancellation cannot hold the others (``asyncio.wait_for`` would wait
    for it to acknowledge). A step that raises is logged and the next one runs. At the deadline
    the step still running is cancelled and left behind, and the pool's connections are closed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for name, step in steps:
        task = asyncio.ensure_future(step())
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
        if not done:
            log.warning(
                "shutdown overran; closing the database connections",
                extra={"step": name, "seconds": timeout, "waiting": pending_tasks()},
            )
            task.cancel()
            pool.terminate()
            return False
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("shutdown step failed", extra={"step": name, "error": type(error).__name__})
    return True


def pending_tasks(limit: int = 20) -> list[str]:
    """Every other pending task of the loop as ``name: where``, at most ``limit`` of them."""
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    return [f"{t.get_name()}: {where(t)}" for t in others[:limit]]


def where(task: asyncio.Task[object], depth: int = 4) -> str:
    """The innermost ``depth`` calls a suspended task waits in, outermost first
    (``run > _publish > acquire``), followed through each coroutine's ``cr_await``."""
    calls: list[str] = []
    awaited: object = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        calls.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " > ".join(calls[-depth:]) or "not started"
