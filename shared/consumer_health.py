"""Every consumer of a service, supervised: started, measured, and replaced when it stalls.

A consumer is *stalled* when its group has records unread and has not moved for
``consumer_stall_seconds``: lag is the log-end offsets (read by a client in no group) minus the
positions the group recorded in the service's own database (where it never recorded one: minus
where it starts reading, so a member stuck in its first batch counts too), so it stays true when
the broker has forgotten the group or the member has silently stopped. A stalled or exited consumer is replaced
by a fresh one (at most once per stall period), ``/readyz`` answers not ready while any consumer
is stalled or absent, and ``consumer_last_progress_seconds`` feeds the alert rule.

Both read the time since progress was last *seen*, on the clock, when they are asked: a check
that cannot finish (its read of the positions waits on a locked table, fails round after round, or
the watchdog's task ended) sees no progress, so the consumers turn stalled instead of keeping the
last verdict for as long as the watchdog is blind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import consumer_positions
from shared.consumer import EventConsumer
from shared.kafka import committed_offsets, end_offsets, incarnation_of, make_probe, stop_consumer
from shared.observability import (
    CONSUMER_LAG,
    CONSUMER_LAST_PROGRESS,
    CONSUMER_RESTARTS,
    CONSUMER_STALLED,
)
from shared.sensitivity import neutral_label
from shared.settings import BaseServiceSettings

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What ``/readyz`` says of one consumer."""

    lag: int | None = None  # None: the broker could not be asked
    progress_at: float | None = None  # ``time.monotonic()`` when progress was last seen; None: not watched

    @property
    def since_progress(self) -> float:
        """Seconds since progress was last seen, now (0 while the consumer is not watched)."""
        return 0.0 if self.progress_at is None else time.monotonic() - self.progress_at


def _seconds(health: Health) -> float:
    return round(health.since_progress, 1)


class ConsumerMonitor:
    """Runs the consumers of one process and checks them every ``consumer_check_interval``."""

    def __init__(self, pool: asyncpg.Pool, settings: BaseServiceSettings, consumers: list[EventConsumer]):
        self.pool = pool
        self.settings = settings
        self.consumers = consumers
        self.health = {id(c): Health() for c in consumers}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._replaced_at: dict[int, float] = {}
        self._seen: dict[int, tuple[dict[TopicPartition, int], int]] = {}
        self._probe: AIOKafkaConsumer | None = None
        # Where each group begins on a partition it never recorded, per broker log: asked once
        # (it moves only when the group commits, which follows a recorded position).
        self._starts: dict[tuple[str, TopicPartition], int] = {}
        self._starts_of = ""

    def state(self, consumer: EventConsumer) -> str:
        task = self._tasks.get(id(consumer))
        if task is None or task.done():
            return "absent"
        if self.stalled(consumer):
            return "stalled"
        return "assigned" if consumer.assigned else "waiting"

    def stalled(self, consumer: EventConsumer) -> bool:
        return self.health[id(consumer)].since_progress > self.settings.consumer_stall_seconds

    def _stalled_flag(self, consumer: EventConsumer) -> float:
        return float(self.stalled(consumer))

    async def run(self) -> None:
        now = time.monotonic()
        for c in self.consumers:
            self._start(c)
            h = self.health[id(c)]
            h.progress_at = now
            # Read at each scrape, like /readyz: a watchdog that stopped seeing cannot freeze them.
            labels = (self.settings.service_name, c.name)
            CONSUMER_LAST_PROGRESS.labels(*labels).set_function(functools.partial(_seconds, h))
            CONSUMER_STALLED.labels(*labels).set_function(functools.partial(self._stalled_flag, c))
        try:
            while True:
                await asyncio.sleep(self.settings.consumer_check_interval)
                try:
                    await self.check()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # e.g. the database is down: the next check tries again
                    log.warning("consumer check failed", extra={"error": type(e).__name__})
        finally:
            for task in self._tasks.values():
                task.cancel()
            for task in self._tasks.values():
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 10)
            if self._probe is not None:
                await stop_consumer(self._probe)

    def _start(self, consumer: EventConsumer) -> None:
        self._tasks[id(consumer)] = asyncio.create_task(consumer.run(), name=f"consumer-{consumer.name}")

    async def check(self) -> None:
        """Measure every consumer's lag and progress; replace the ones that stalled or exited."""
        broker = await self._broker_view()
        async with self.pool.acquire() as conn:
            recorded = {id(c): await consumer_positions.load(conn, c.name) for c in self.consumers}
        for c in self.consumers:
            h = self.health[id(c)]
            positions = recorded[id(c)]
            h.lag = None
            if broker is not None:
                ends, incarnation = broker
                mine = {tp: end for tp, end in ends.items() if tp.topic in c.topics}
                starts = await self._starts_unrecorded(
                    c, [tp for tp, end in mine.items() if end and tp not in positions], incarnation
                )
                per_topic = consumer_positions.lag(mine, positions, incarnation, starts)
                h.lag = sum(per_topic.values())
                for topic, behind in per_topic.items():
                    CONSUMER_LAG.labels(self.settings.service_name, c.name, neutral_label(topic)).set(behind)
            offsets = {tp: p.next_offset for tp, p in positions.items()}
            seen = (offsets, c.handled)
            if seen != self._seen.get(id(c)) or h.lag == 0:
                h.progress_at = time.monotonic()  # not before: a replacement above may have taken seconds
            self._seen[id(c)] = seen
            task = self._tasks[id(c)]
            if task.done():
                await self._replace(c, "exited")
            elif (
                self.stalled(c)
                and time.monotonic() - self._replaced_at.get(id(c), -1e9)
                > self.settings.consumer_stall_seconds
            ):
                log.error(
                    "consumer stalled: records unread and no progress",
                    extra={"consumer": c.name, "lag": h.lag, "seconds": round(h.since_progress)},
                )
                await self._replace(c, "stalled")

    async def _replace(self, consumer: EventConsumer, reason: str) -> None:
        task = self._tasks[id(consumer)]
        task.cancel()
        _done, pending = await asyncio.wait({task}, timeout=10)
        if pending:
            log.error("consumer did not end when cancelled; abandoned", extra={"consumer": consumer.name})
        elif not task.cancelled() and task.exception() is not None:
            log.error("consumer ended", extra={"consumer": consumer.name, "error": repr(task.exception())})
        CONSUMER_RESTARTS.labels(self.settings.service_name, consumer.name, reason).inc()
        log.warning("consumer replaced by a fresh one", extra={"consumer": consumer.name, "reason": reason})
        self._replaced_at[id(consumer)] = time.monotonic()
        self._start(consumer)

    async def _starts_unrecorded(
        self, consumer: EventConsumer, partitions: list[TopicPartition], incarnation: str
    ) -> dict[TopicPartition, int]:
        """Where ``consumer``'s group reads from on partitions with records that it never recorded a
        position on: the offset it committed to the broker, else the log's start (it reads from the
        earliest). A member held up in its very first batch is stalled too; without this its lag
        there would read nothing. Empty when the broker cannot tell (nothing counted, as before)."""
        if incarnation != self._starts_of:
            self._starts, self._starts_of = {}, incarnation
        unknown = [tp for tp in partitions if (consumer.name, tp) not in self._starts]
        if unknown and self._probe is not None:
            try:
                begins = await asyncio.wait_for(self._probe.beginning_offsets(unknown), 10)
                committed = await asyncio.wait_for(
                    committed_offsets(self.settings, consumer.name, unknown), 10
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.info("group start offsets unavailable", extra={"error": type(e).__name__})
                return {}
            for tp in unknown:
                start = committed.get(tp, begins.get(tp))
                if start is not None:
                    self._starts[(consumer.name, tp)] = start
        return {
            tp: self._starts[(consumer.name, tp)] for tp in partitions if (consumer.name, tp) in self._starts
        }

    async def _broker_view(self) -> tuple[dict[TopicPartition, int], str] | None:
        """Log-end offsets of the consumers' topics and the broker log's incarnation, or None."""
        topics = sorted({t for c in self.consumers for t in c.topics})
        try:
            if self._probe is None:
                probe = make_probe(self.settings)
                await asyncio.wait_for(probe.start(), 10)
                self._probe = probe
            known = await asyncio.wait_for(self._probe.topics(), 10)
            ends = await asyncio.wait_for(end_offsets(self._probe, topics), 10)
            return ends, incarnation_of(known) or ""
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.info("broker offsets unavailable", extra={"error": type(e).__name__})
            if self._probe is not None:
                await stop_consumer(self._probe)
                self._probe = None
            return None
