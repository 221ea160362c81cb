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

Consecutive items of a kind that has a use case for many at once (``Prepared.together``: moves,
most of a registrar system's traffic) are recorded by one call of it, in a few statements for
the whole run; it answers rule refusals itself (they write nothing), and anything else it raises
sends the batch the way of a refusal above: again, one item and one savepoint at a time.

Before its first item a batch locks the rows of the people its items touch, all at once and in
key order (``persons.lock_people_of``), where they run as more than one run of items: each item
locks its people in the order of its own statements (a person's row before her records), so two
batches about the same people in opposite orders (a registrar's corrections of X then Y, another
system's of Y then X; two marriages dissolved in turn) each held one row the other waited for, a
deadlock, and one failed whole (503). A batch of one run (moves only, as most are) locks its people
in key order already and costs no statement more. A person the batch registers (or first records by
a move) is locked by her key in the same step, her row not there yet (``persons._LOCK_PEOPLE``):
two batches registering X and Y in opposite orders each inserted one and waited for the other's
uncommitted entry in the unique index.

The same machinery records concurrent single requests together (``record_group``, the group
commit of single moves): each request's item is answered as its single route would answer it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel

from services.registry.adapters import persons
from shared.db import CONTENTION, is_unavailable, unit_of_work
from shared.errors import DomainError, ServiceUnavailable, request_fault

Item = Callable[[asyncpg.Connection], Awaitable[BaseModel]]  # a use case bound to its command
# A use case for many commands of one kind at once, given the commands and the trace each one's
# events carry: each one's answer or rule refusal, in order.
Together = Callable[
    [asyncpg.Connection, list[Any], list[str | None]], Awaitable[Sequence[BaseModel | DomainError]]
]


@dataclass(frozen=True)
class Prepared:
    """A batch item ready to run: its use case bound to its command (``one``), and where its kind
    has one, the use case for a run of such items (``together``, given the commands). Items of one
    kind and one ``group`` (the jurisdiction recorded for) may be recorded together; each keeps
    its own ``traceparent`` (the items of a group commit come from different requests).
    ``touches``: the records (type, jurisdiction, key) whose people's rows the item locks."""

    one: Item
    kind: str = ""
    command: Any = None
    together: Together | None = None
    group: object = None
    traceparent: str | None = None
    touches: tuple[tuple[str, str, object], ...] = ()


class NotTogether(Exception):
    """A run of items that cannot be recorded together after all: record them one at a time."""


# Faults of the moment, not of an item: the same batch may well pass a second later.
_TRANSIENT = CONTENTION


@dataclass(frozen=True)
class Outcome:
    """An item's result: what the use case answered, or why the item was refused."""

    result: BaseModel | None = None
    error: DomainError | None = None


async def record_each(conn: asyncpg.Connection, items: Sequence[Prepared | DomainError]) -> list[Outcome]:
    """Run each item (a use case bound to its input); an item already refused at the edge (a
    ``DomainError`` in its place) is passed through without touching the database."""
    touched = _touched_across_runs(items)
    if touched:
        try:
            await persons.lock_people_of(conn, touched)
        except Exception as e:
            raise _refusal(e) from e  # or raises itself: the whole batch fails
    optimistic = conn.transaction()
    await optimistic.start()
    outcomes: list[Outcome] = []
    at = 0
    while at < len(items):
        run = _run_at(items, at)
        try:
            outcomes += await _optimistic(conn, run)
        except Exception as e:
            if not isinstance(e, NotTogether):
                _refusal(e)  # or raises: the whole batch fails
            await optimistic.rollback()
            return [await _isolated(conn, each) for each in items]
        at += len(run)
    await optimistic.commit()
    return outcomes


def _touched_across_runs(items: Sequence[Prepared | DomainError]) -> list[tuple[str, str, object]]:
    """What the items touch, when more than one run of them touches anything: their people are
    then locked first, in key order. A single run locks its own in order (a move's ``together``,
    a marriage's spouses sorted)."""
    touched: list[tuple[str, str, object]] = []
    runs, at = 0, 0
    while at < len(items):
        run = _run_at(items, at)
        found = [t for item in run if isinstance(item, Prepared) for t in item.touches]
        runs += bool(found)
        touched += found
        at += len(run)
    return touched if runs > 1 else []


def _run_at(items: Sequence[Prepared | DomainError], at: int) -> Sequence[Prepared | DomainError]:
    """The item at ``at`` alone, or with the items after it that its ``together`` also records."""
    first = items[at]
    if isinstance(first, DomainError) or first.together is None:
        return items[at : at + 1]
    end = at + 1
    while (
        end < len(items)
        and isinstance(nxt := items[end], Prepared)
        and (nxt.kind, nxt.group) == (first.kind, first.group)
    ):
        end += 1
    return items[at:end]


async def _optimistic(conn: asyncpg.Connection, run: Sequence[Prepared | DomainError]) -> list[Outcome]:
    """A run of items in the optimistic savepoint: raises at an item's refusal (but not at one that
    ``together`` answered)."""
    first = run[0]
    if isinstance(first, DomainError):
        return [Outcome(error=first)]
    if first.together is None:
        return [Outcome(result=await first.one(conn))]
    prepared = [item for item in run if isinstance(item, Prepared)]
    answers = await first.together(conn, [i.command for i in prepared], [i.traceparent for i in prepared])
    return [Outcome(error=a) if isinstance(a, DomainError) else Outcome(result=a) for a in answers]


async def _isolated(conn: asyncpg.Connection, item: Prepared | DomainError) -> Outcome:
    if isinstance(item, DomainError):
        return Outcome(error=item)
    try:
        async with conn.transaction():  # nested: a savepoint, so a refused item leaves no row behind
            return Outcome(result=await item.one(conn))
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
            f"the database could not finish the request ({type(e).__name__}); nothing was written, "
            "retry it with the same Idempotency-Key",
            retry_after=1,
        ) from e
    raise e  # the database is unavailable: the shared edge answers 503, the transaction is gone


async def record_group(pool: asyncpg.Pool, items: list[Prepared]) -> list[Outcome | None]:
    """Items of concurrent requests recorded in one transaction with ``record_each``: each one's
    outcome. ``None`` for every item when the group failed before its commit (a lock it waited
    for too long, a deadlock, a lost connection): nothing of it was written, and each request
    then runs alone, as it would have without the group, so one request's conflict is not every
    request's. A failed commit is raised to every request: whether it took effect is unknown, and
    running the items again could record them twice."""
    committing = False
    try:
        async with unit_of_work(pool) as conn:
            outcomes = await record_each(conn, items)
            committing = True
    except Exception:
        if committing or len(items) == 1:
            raise
        return [None] * len(items)
    return list(outcomes)
