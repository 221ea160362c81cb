"""Each consumer group's own record of where it stands: table ``consumer_positions``.

The broker's committed offsets are a convenience for tools; these rows are what a fresh member
seeks to when it is given a partition, and what lag and progress are measured against. They are
written in a batch's own transaction, with its inbox rows and effects (a batch with a failed
message: once that one was retried or dead-lettered), so they are never ahead of the inbox, and
a crash before the commit makes the group read the batch again, which the inbox absorbs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg
from aiokafka import TopicPartition


@dataclass(frozen=True)
class Position:
    next_offset: int
    incarnation: str
    updated_at: dt.datetime


async def save(
    conn: asyncpg.Connection, consumer: str, positions: dict[TopicPartition, int], incarnation: str
) -> None:
    """Record the next offset to read per partition (one statement for the whole batch)."""
    if not positions:
        return
    items = sorted(positions.items())
    await conn.execute(
        """INSERT INTO consumer_positions (consumer, topic, partition, next_offset, incarnation)
           SELECT $1, t, p, o, $5 FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
           ON CONFLICT (consumer, topic, partition) DO UPDATE
           SET next_offset = EXCLUDED.next_offset, incarnation = EXCLUDED.incarnation, updated_at = now()""",
        consumer,
        [tp.topic for tp, _ in items],
        [tp.partition for tp, _ in items],
        [offset for _, offset in items],
        incarnation,
    )


async def load(conn: asyncpg.Connection, consumer: str) -> dict[TopicPartition, Position]:
    rows = await conn.fetch(
        """SELECT topic, partition, next_offset, incarnation, updated_at
           FROM consumer_positions WHERE consumer = $1""",
        consumer,
    )
    return {
        TopicPartition(r["topic"], r["partition"]): Position(
            r["next_offset"], r["incarnation"], r["updated_at"]
        )
        for r in rows
    }


def start_offset(position: Position | None, incarnation: str, rewind: bool) -> int | None:
    """Where a member given a partition starts: its recorded position on the current broker log;
    the log's start if the position belongs to a log the broker no longer has (or a rewind is
    asked for); None (the group's committed offset, else the earliest) if nothing is recorded."""
    if position is not None and position.incarnation == incarnation and not rewind:
        return position.next_offset
    if position is not None or rewind:
        return 0
    return None


def lag(
    ends: dict[TopicPartition, int],
    positions: dict[TopicPartition, Position],
    incarnation: str,
    starts: dict[TopicPartition, int] | None = None,
) -> dict[str, int]:
    """Records unread per topic: log end minus the recorded position (from the log's start when
    the position belongs to an older broker log). On a partition the group never recorded, it
    reads from ``starts`` (the offset it committed to the broker, else the log's start); one
    missing there as well counts as caught up."""
    out: dict[str, int] = {}
    for tp, end in ends.items():
        position = positions.get(tp)
        if position is None:
            start = (starts or {}).get(tp)
            behind = 0 if start is None else max(0, end - start)
        elif position.incarnation != incarnation:
            behind = end
        else:
            behind = max(0, end - position.next_offset)
        out[tp.topic] = out.get(tp.topic, 0) + behind
    return out
