"""Recording a registrar system's batch: every item in the caller's one transaction, each in a savepoint.

Items run in the order sent, so a later item sees what an earlier one recorded (a person, then
her departure). An item refused by a rule, or by the database because of what it says (a
constraint, a value PostgreSQL cannot hold), is rolled back to its savepoint and answered like
the single route would answer it; the others go on and commit together. A database that fails
under the batch (connection lost, lock or statement timeout, deadlock) fails the whole batch:
nothing is written and the caller retries it whole, with the same ``Idempotency-Key``.

Savepoints only when a batch holds a refused item: the items first run one after the other in
a single savepoint (two round trips fewer per item); at the first refusal that savepoint is
rolled back and the batch runs again with a savepoint per item, so a refusal costs at most the
work done before it once more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
from pydantic import BaseModel

from shared.db import CONTENTION, is_unavailable
from shared.errors import DomainError, ServiceUnavailable, request_fault

Item = Callable[[asyncpg.Connection], Awaitable[BaseModel]]  # a use case bound to its command

# Faults of the moment, not of an item: the same batch may well pass a second later.
_TRANSIENT = CONTENTION


@dataclass(frozen=True)
class Outcome:
    """An item's result: what the use case answered, or why the item was refused."""

    result: BaseModel | None = None
    error: DomainError | None = None


async def record_each(conn: asyncpg.Connection, items: Sequence[Item | DomainError]) -> list[Outcome]:
    """Run each item (a use case bound to its input); an item already refused at the edge (a
    ``DomainError`` in its place) is passed through without touching the database."""
    optimistic = conn.transaction()
    await optimistic.start()
    outcomes = []
    for item in items:
        if isinstance(item, DomainError):
            outcomes.append(Outcome(error=item))
            continue
        try:
            outcomes.append(Outcome(result=await item(conn)))
        except Exception as e:
            _refusal(e)  # or raises: the whole batch fails
            await optimistic.rollback()
            return [await _isolated(conn, each) for each in items]
    await optimistic.commit()
    return outcomes


async def _isolated(conn: asyncpg.Connection, item: Item | DomainError) -> Outcome:
    if isinstance(item, DomainError):
        return Outcome(error=item)
    try:
        async with conn.transaction():  # nested: a savepoint, so a refused item leaves no row behind
            return Outcome(result=await item(conn))
    except Exception as e:
        return Outcome(error=_refusal(e))


def _refusal(e: Exception) -> DomainError:
    """The item's refusal, or raise: the database failed under the batch, not because of the item."""
    if isinstance(e, DomainError):
        return e
    fault = request_fault(e)
    if fault is not None:
        return fault
    if isinstance(e, _TRANSIENT) and not is_unavailable(e):
        raise ServiceUnavailable(
            f"the database could not finish the batch ({type(e).__name__}); nothing was written, "
            "retry it with the same Idempotency-Key",
            retry_after=1,
        ) from e
    raise e  # the database is unavailable: the shared edge answers 503, the transaction is gone
