"""Dispatch by event type through a service's handler table (cosmicpython's message bus).

Each service names what it does with each event type it consumes in one table,
``HANDLERS: dict[event type, handler]`` in its service layer, with the authority rule of each
entry beside it. The consumer, the replay (``exchangectl replay``, dead-letter replay) and the
reconciliation's repairs all reach the handlers through that table, never through an
``if event.type == ...`` chain of their own.

A handler takes the connection of the caller's unit of work, the service's settings and the
event; it never commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

import asyncpg

from shared.events.catalog import CATALOG, CURRENT_TYPES
from shared.events.envelope import AnyEnvelope

S = TypeVar("S")
Handler = Callable[[asyncpg.Connection, S, AnyEnvelope], Awaitable[object]]
Bound = Callable[[asyncpg.Connection, AnyEnvelope], Awaitable[None]]
# Applies many fresh events at once, with the same outcome as the table's handlers applying them
# in turn (a consumer writes their inbox rows); if it raises, the consumer goes event by event.
BatchHandler = Callable[[asyncpg.Connection, list[AnyEnvelope]], Awaitable[None]]


class Unhandled(Exception):
    """An event whose type has no handler in the table it was dispatched through."""


def dispatcher(table: Mapping[str, Handler[S]], settings: S, *, topics: Iterable[str] = ()) -> Bound:
    """The table as one consumer handler: the event's type picks the entry.

    ``topics``: what the consumer reads; a table without an entry for one of their types fails
    here, where the consumer is wired, not at its first such event. A type without an entry
    raises ``Unhandled`` (a consumer dead-letters it); it cannot reach a consumer whose table
    covers its topics, since each message's type is checked against its topic first.
    """
    missing = [t for t in types_on(topics) if t not in table]
    if missing:
        raise ValueError(f"no handler for {', '.join(missing)}")

    async def dispatch(conn: asyncpg.Connection, event: AnyEnvelope) -> None:
        handler = table.get(event.type)
        if handler is None:
            raise Unhandled(f"no handler for {event.type}")
        await handler(conn, settings, event)

    return dispatch


def batch_handler(batches: Mapping[str, BatchHandler], topics: Iterable[str]) -> BatchHandler | None:
    """The whole-batch handler for a consumer of ``topics``: there is one when ``batches`` has the
    same entry for every event type they carry (a disclosure and a batch of disclosures are both
    appended to the audit log); otherwise a batch goes event by event."""
    found = {batches.get(t) for t in types_on(topics)}
    return found.pop() if len(found) == 1 else None


def types_on(topics: Iterable[str]) -> list[str]:
    """The event types a consumer of these topics meets (older versions arrive upcast)."""
    wanted = set(topics)
    return [t for t in CURRENT_TYPES if CATALOG[t].topic in wanted]
