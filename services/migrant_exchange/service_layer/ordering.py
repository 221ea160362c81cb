"""Per-subject ordering with the ``sequence`` extension.

Registries number each subject's events per producing source. An event whose predecessor has
not been applied yet waits (parked) until the predecessor arrives; a gap that does not fill
before its deadline becomes a discrepancy, and the waiting events go on in order; the
discrepancy resolves itself when the missing events arrive after all (``arrived_late``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from services.migrant_exchange.adapters import delivery
from services.migrant_exchange.adapters import discrepancies as cases
from shared.db import is_transient
from shared.events.catalog import parse_event
from shared.events.envelope import Envelope

Apply = Callable[[asyncpg.Connection, Envelope[Any]], Awaitable[None]]
# What becomes of a parked event refused or failing in its turn (``messagebus.refuser``: a dead
# letter, as the consumer makes of one refused or failing on arrival).
Refuse = Callable[[asyncpg.Connection, Envelope[Any], bytes, Exception], Awaitable[None]]
# Keyed and numbered by their own id, not a person's: there is nothing to order them after.
UNSEQUENCED = frozenset({"exchange.feedback_batch.v1"})


def sequenced(event: Envelope[Any]) -> bool:
    """Whether the event takes its turn among its subject's events from its source: a registry's
    events about a person do; anything else (the exchange's own, a batch of answers) applies at
    once."""
    return event.producer is not None and event.type not in UNSEQUENCED


async def apply_in_order(
    conn: asyncpg.Connection, event: Envelope[Any], apply: Apply, gap_seconds: float, refuse: Refuse
) -> bool:
    """Apply the event now if it is next for its subject and source; park it otherwise.

    Returns False when the event was parked. Events not ``sequenced``, and events older than the
    applied sequence (a late arrival after its gap expired, a replay), apply at once: the inbox
    has already made sure each event applies once. Only these late ones look for a gap's case.
    """
    if not sequenced(event):
        await apply(conn, event)
        return True
    last, waiting = await delivery.advance(conn, event.subject, event.source, event.sequence)
    if last == event.sequence and waiting == 0:  # next in line (or a replay of the last): go
        await apply(conn, event)
        return True
    if event.sequence <= last:
        await apply(conn, event)
        await arrived_late(conn, [event])
        return True
    if event.sequence > last + 1:
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=gap_seconds)
        value = event.model_dump_json().encode()
        await delivery.park(conn, event.subject, event.source, event.sequence, event.id, value, deadline)
        return False
    await apply(conn, event)
    await _drain(conn, event.subject, event.source, event.sequence, apply, refuse)
    return True


async def _drain(
    conn: asyncpg.Connection, subject: str, source: str, last: int, apply: Apply, refuse: Refuse
) -> int:
    """Apply the parked successors of ``last`` in order, then record the progress."""
    while (value := await delivery.unpark(conn, subject, source, last + 1)) is not None:
        await _apply_parked(conn, parse_event(value), value, apply, refuse)
        last += 1
    await delivery.set_progress(conn, subject, source, last)
    return last


async def _apply_parked(
    conn: asyncpg.Connection, event: Envelope[Any], value: bytes, apply: Apply, refuse: Refuse
) -> None:
    """A parked event in its turn, in a savepoint. The rules that need the exchange's records (a
    record's end only from a holder, an answer only from the notification's addressee) are
    checked now, with the records of its turn; an event they refuse is refused alone, and it
    takes its turn all the same. So is one that fails for a fault of its own (a value PostgreSQL
    cannot store, say: anything but the database's own trouble, ``is_transient``, which the
    caller's unit of work meets and retries). Neither the event whose arrival released it (which
    the consumer would otherwise dead-letter in its place) nor the other gaps of a sweep (which
    would never be released again) pay for it."""
    try:
        async with conn.transaction():
            await apply(conn, event)
    except Exception as e:
        if is_transient(e):
            raise
        await refuse(conn, event, value, e)


def _division(source: str) -> str:
    """The producing registry's jurisdiction, which a gap's case names on both sides."""
    return source.rsplit("/", 1)[-1]


async def arrived_late(conn: asyncpg.Connection, events: list[Envelope[Any]]) -> None:
    """Events applied after their turn (older than the applied sequence): those a released gap
    still misses count towards its case, which resolves itself once all of them are here. A
    replay of older events takes this way too, at one index probe each."""
    await cases.fill_gaps(conn, [(e.subject, e.source, _division(e.source), e.sequence) for e in events])


async def release_expired_gaps(conn: asyncpg.Connection, apply: Apply, refuse: Refuse) -> int:
    """Give up waiting where the deadline passed: open a discrepancy and apply what waited."""
    released = 0
    for subject, source in await delivery.expired_gaps(conn):
        last = await delivery.lock_progress(conn, subject, source)
        first = await delivery.first_parked(conn, subject, source)
        if first is None:
            continue
        if first > last + 1:
            producer = _division(source)
            await cases.open_case(
                conn,
                {
                    "kind": "sequence_gap",
                    "division_a": producer,
                    "division_b": producer,
                    "subject": subject,
                    "record_kind": "event",
                    "record_key": f"{source}#{last + 1}-{first - 1}",
                    "detail": {"source": source, "missing_from": last + 1, "missing_to": first - 1},
                },
            )
        await _drain(conn, subject, source, first - 1, apply, refuse)
        released += 1
    return released
