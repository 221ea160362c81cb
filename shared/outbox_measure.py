"""The outbox measured: how many rows wait, how old the oldest is, how many were set aside.

``oldest_waiting`` and ``measure_outbox`` are the queries, over the partial index of unpublished
rows (``/readyz`` and its metrics use them too, ``shared.app``). ``OutboxGauges`` is the relay's
part of it (``shared.outbox_relay.OutboxRelay`` inherits it): every replica, leader or not, keeps
the outbox gauges current, the oldest row's age every few seconds and a full count now and then.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import asyncpg

from shared.observability import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_REFUSED_ROWS

# The relay's lines keep the relay's logger, whichever of its modules writes them.
log = logging.getLogger("shared.outbox_relay")

_MEASURE_SECONDS = 5.0  # every replica measures its oldest waiting event this often
_COUNT_EVERY = 6  # ... and counts the whole backlog every this many measures (30 s)


async def oldest_waiting(conn: asyncpg.Connection) -> float:
    """The age in seconds of the oldest event waiting to be published (0 if none): the first row
    of the partial index of unpublished rows, so as cheap with 200,000 waiting as with one."""
    age = await conn.fetchval(
        """SELECT extract(epoch FROM now() - created_at)::float FROM outbox
           WHERE published_at IS NULL AND refused_at IS NULL ORDER BY id LIMIT 1"""
    )
    return float(age or 0.0)


async def measure_outbox(conn: asyncpg.Connection) -> asyncpg.Record:
    """The outbox's backlog (rows waiting), the age in seconds of its oldest waiting row, and
    the rows set aside as refused: one pass over the partial index of unpublished rows."""
    row: asyncpg.Record = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE refused_at IS NULL) AS backlog,
                  coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE refused_at IS NULL)),
                           0)::float AS oldest,
                  count(*) FILTER (WHERE refused_at IS NOT NULL) AS refused
           FROM outbox WHERE published_at IS NULL"""
    )
    return row


class OutboxGauges:
    """The outbox relay's measure of its outbox, for its gauges (part of ``OutboxRelay``)."""

    pool: asyncpg.Pool
    service: str

    async def _measure_forever(self) -> None:
        """Every replica's own measure of the outbox, leader or not: a standby, or a replica whose
        leader is stuck, still reports the outbox growing old (alert OutboxNotDraining)."""
        for turn in itertools.count():
            try:
                if turn % _COUNT_EVERY == 0:
                    await self._refresh_gauges()
                else:  # counting a large backlog costs a pass over it: the age alone, in between
                    async with self.pool.acquire() as conn:
                        OUTBOX_OLDEST_AGE.labels(self.service).set(await oldest_waiting(conn))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: the gauges keep their last values
                log.info("outbox measure failed", extra={"error": type(e).__name__})
            await asyncio.sleep(_MEASURE_SECONDS)

    async def _refresh_gauges(self) -> None:
        async with self.pool.acquire() as conn:
            row = await measure_outbox(conn)
        OUTBOX_BACKLOG.labels(self.service).set(row["backlog"])
        OUTBOX_OLDEST_AGE.labels(self.service).set(row["oldest"])
        OUTBOX_REFUSED_ROWS.labels(self.service).set(row["refused"])
