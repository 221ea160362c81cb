"""The outbox relay's repair of a broker that came back empty (a memory-only broker restarted).

Two signs of it: a partition's log going back below what the broker acknowledged before
(``_log_went_back``, with every batch) and a new incarnation marker among the topics
(``_watch_broker``, every replica, leader or not). Either way the topics are recreated, this
process's consumers restart, and the leader holds publishing until the reset has settled, then
queues its recent outbox again and records in the same transaction (``relay_state``) the broker
log it was re-sent for; a relay that takes the lock re-sends what its predecessor could not
(``_catch_up_on_resets``). ``BrokerResetRecovery`` is part of ``shared.outbox_relay.OutboxRelay``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg
from aiokafka.structs import RecordMetadata

from shared.kafka import all_topics, ensure_topics, incarnation_of, topic_names
from shared.observability import BROKER_RESETS
from shared.settings import BaseServiceSettings

# The relay's lines keep the relay's logger, whichever of its modules writes them.
log = logging.getLogger("shared.outbox_relay")

# After a broker came back empty, every relay's producer goes on writing with what it knew of
# the old broker until it notices; a memory-only broker stores some of those writes under
# offsets it hands out again once the topics are recreated, shadowing one record with another.
# So a relay that saw the reset publishes nothing until that storm has passed, then sends its
# recent events again, once (the inboxes drop what had arrived before).
_RESET_SETTLE_SECONDS = 5.0


class BrokerResetRecovery:
    """What the outbox relay does when the broker lost its log (part of ``OutboxRelay``, whose
    ``__init__`` sets the state declared here)."""

    pool: asyncpg.Pool
    settings: BaseServiceSettings
    service: str
    leader: bool
    reset_listeners: list[Callable[[], None]]
    _wake: asyncio.Event
    _sending: asyncio.Lock
    _acked: dict[tuple[str, int], int]
    _incarnation: str | None
    _resend_again: asyncio.Task[None] | None
    _resend_for: str | None
    _settling: bool

    def _log_went_back(self, acks: list[RecordMetadata]) -> bool:
        """Whether a partition's log went back: this batch's first offset on it at or below the
        last one acknowledged before (each record batch is acknowledged with its first offset)."""
        first: dict[tuple[str, int], int] = {}
        last: dict[tuple[str, int], int] = {}
        for meta in acks:
            tp = (meta.topic, meta.partition)
            first[tp] = min(first.get(tp, meta.offset), meta.offset)
            last[tp] = max(last.get(tp, meta.offset), meta.offset)
        went_back = any(offset <= self._acked.get(tp, -1) for tp, offset in first.items())
        if went_back:
            self._acked.clear()
        else:
            self._acked.update(last)
        return went_back

    async def _watch_broker(self) -> None:
        """Notice a broker that came back empty (memory-only broker restarted) and repair it.

        Missing topics are one sign; a new incarnation marker is the other: another service may
        have recreated the topics before this one looked, and this service must still re-send
        its recent events and restart its consumers.
        """
        while True:
            await asyncio.sleep(2.0)
            try:
                names = await topic_names(self.settings)
                if any(t not in names for t in all_topics()) or incarnation_of(names) is None:
                    await ensure_topics(self.settings)
                    names = await topic_names(self.settings)
                current = incarnation_of(names)
                if self._incarnation is None:
                    self._incarnation = current
                elif current is not None and current != self._incarnation:
                    self._incarnation = current
                    self._broker_reset_seen()
                    if self.leader:
                        async with self._sending:
                            await self._resend_recent(current)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the watchdog must outlive any one failed check
                log.info("broker check failed", extra={"error": type(e).__name__})

    async def recover_broker_reset(self) -> None:
        """This relay saw the log go back: recreate what is missing, then re-send (called with
        ``_sending`` held, by the batch that saw it)."""
        await ensure_topics(self.settings)
        self._incarnation = incarnation_of(await topic_names(self.settings))
        self._broker_reset_seen()
        await self._resend_recent(self._incarnation)

    async def _catch_up_on_resets(self) -> None:
        """On taking the relay (start, a hand-over, a new producer): if the broker is on another
        log than the one this database's recent outbox was last sent to, re-send it there.

        ``relay_state`` names a new log only once the recent rows were queued again for it (in
        the same transaction), so a relay stopped while a reset settled leaves it naming the old
        log, and this re-sends what that relay could not."""
        current = incarnation_of(await topic_names(self.settings))
        if current is None:
            return
        async with self.pool.acquire() as conn:
            stored = await conn.fetchval("SELECT incarnation FROM relay_state")
        if stored is None:  # the first publication from this database: nothing to send again
            async with self.pool.acquire() as conn:
                await self._remember_incarnation(conn, current)
        elif stored != current and not (self._settling and self._resend_for == current):
            log.warning("broker is on another log than the last publication; re-sending recent events")
            async with self._sending:
                await self._resend_recent(current)

    @staticmethod
    async def _remember_incarnation(conn: asyncpg.Connection, current: str) -> None:
        await conn.execute(
            """INSERT INTO relay_state (incarnation) VALUES ($1)
               ON CONFLICT (singleton) DO UPDATE SET incarnation = $1, updated_at = now()""",
            current,
        )

    def _broker_reset_seen(self) -> None:
        BROKER_RESETS.labels(self.service).inc()
        for listener in self.reset_listeners:
            listener()  # e.g. consumers restart: their in-memory positions point past the new log

    async def _resend_recent(self, incarnation: str | None) -> None:
        """Hold publishing until the reset has settled, then queue the recent outbox again and
        record, in the same transaction, that it was sent for the broker log ``incarnation``.

        Sent at once, what this relay published in the next seconds could be shadowed by another
        producer's stale writes and would have to be sent again; a backlog waiting for the broker
        would then go out twice (the origin's outbox rows were updated 3.1 times per event so).
        The consumers re-form their groups in these seconds anyway."""
        self._settling = True
        # What the old log acknowledged says nothing of the new one: its first acknowledgements
        # would otherwise read as the log going back once more, and hold publishing again.
        self._acked.clear()
        log.warning(
            "broker lost its log; topics recreated, recent events re-sent once it settles",
            extra={"settle_seconds": _RESET_SETTLE_SECONDS},
        )
        if self._resend_again is not None:
            self._resend_again.cancel()  # a later sign of the same reset: wait from this one
        self._resend_for = incarnation
        self._resend_again = asyncio.create_task(
            self._resend_once_settled(incarnation), name="outbox-resend-again"
        )

    def _abandon_resend(self) -> None:
        """Drop a scheduled re-send (this relay stops, or is no longer the leader). Nothing is
        lost: ``relay_state`` still names the old log, so the next leader re-sends."""
        if self._resend_again is not None:
            self._resend_again.cancel()
        self._resend_again, self._resend_for, self._settling = None, None, False

    async def _resend_once_settled(self, incarnation: str | None) -> None:
        await asyncio.sleep(_RESET_SETTLE_SECONDS)
        while True:  # publishing stays held until the recent events are queued again
            try:
                async with self._sending:
                    requeued = await self._requeue_recent(incarnation)
                    self._settling = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: the relay could not publish either
                log.warning(
                    "re-send after a broker reset failed; retrying", extra={"error": type(e).__name__}
                )
                await asyncio.sleep(1.0)
            else:
                break
        log.info("broker reset settled; recent events re-sent", extra={"requeued": requeued})

    async def _requeue_recent(self, incarnation: str | None) -> str:
        async with self.pool.acquire() as conn, conn.transaction():
            requeued: str = await conn.execute(
                """UPDATE outbox SET published_at = NULL
                   WHERE published_at > now() - make_interval(secs => $1)""",
                self.settings.outbox_replay_window,
            )
            if incarnation is not None:
                await self._remember_incarnation(conn, incarnation)
        self._wake.set()
        return requeued
