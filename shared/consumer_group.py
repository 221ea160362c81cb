"""One member of a Kafka consumer group, reading from the positions its own database records.

The group's positions live in the service's database (``shared.consumer_positions``), saved
with each batch (in its transaction), so a member that joins seeks to them; the broker's
committed offsets are kept for its tools only, and committed at most once a second. Any error
ends the member and a fresh one rejoins; a broker that came back empty (``restart``) is read
again from its start. What a batch means is the subclass's ``process``:
``shared.consumer.EventConsumer`` applies events exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from shared import consumer_positions
from shared.kafka import ensure_topics, incarnation_of, make_consumer, stop_consumer, topic_names
from shared.observability import CONSUMER_RESTARTS
from shared.settings import BaseServiceSettings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# No single broker call may hold a consumer longer than this; past it the member is replaced.
_KAFKA_CALL_TIMEOUT = 30.0
# Seconds between offset commits to the broker while batches flow (its tools' view of the lag).
_COMMIT_INTERVAL = 1.0
# Members left behind by a broker reset, still being stopped (a reference keeps each task alive).
_STOPPING: set[asyncio.Task[None]] = set()


class GroupMember:
    """Consumes ``topics`` as group ``name`` for as long as it runs, batch by batch; a
    ``background`` member (no event's delivery waits on it) fetches with the long wait."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: BaseServiceSettings,
        *,
        name: str,
        topics: list[str],
        background: bool = False,
    ):
        self.pool = pool
        self.background = background
        self.settings = settings
        self.name = name
        self.topics = topics
        self.service = settings.service_name
        self.connected = False
        self._assigned = False
        self._restart = False
        self._restarting = asyncio.Event()  # set with _restart: cuts a waiting broker call short
        self._rewind = False  # after a broker reset: read the new log from its start
        self.incarnation = ""  # the broker log this member reads (shared.kafka incarnation marker)
        # Messages this process has taken in hand, committed or not: a long batch that moves is
        # progress, one blocked on its first statement is not (see shared.consumer_health).
        self.handled = 0

    async def run(self) -> None:
        """Consume for ever: any error ends this member, and a fresh one rejoins the group and
        resumes from the positions the group recorded (see ``shared.consumer_positions``)."""
        backoff = 0.5
        while True:
            seek = _Seek(self)
            seek.consumer = consumer = make_consumer(
                self.settings, self.name, self.topics, seek, background=self.background
            )
            reason = "error"
            # A reset from here on (even while this member starts) replaces it again.
            self._restart = False
            self._restarting.clear()
            try:
                await ensure_topics(self.settings)
                self.incarnation = incarnation_of(await topic_names(self.settings)) or ""
                await asyncio.wait_for(consumer.start(), _KAFKA_CALL_TIMEOUT)
                self.connected, backoff = True, 0.5
                await self._consume(consumer)
                reason = "broker_reset"
            except asyncio.CancelledError:
                raise
            except (TimeoutError, KafkaError, OSError) as e:
                log.warning("consumer reconnecting", extra={"consumer": self.name, "error": type(e).__name__})
            except Exception as e:  # the database or a bug: back off and go on
                log.exception(
                    "consumer loop failed", extra={"consumer": self.name, "error": type(e).__name__}
                )
            finally:
                self.connected = self._assigned = False
                if reason == "broker_reset":
                    # Until it stops, the old client may still rejoin the new log's group (as the
                    # same static member): its assignments must not seek or clear ``_rewind``,
                    # which belong to the fresh member now.
                    seek.consumer = None
                    self._stop_in_background(consumer)
                else:
                    await stop_consumer(consumer)
            CONSUMER_RESTARTS.labels(self.service, self.name, reason).inc()
            log.info("fresh consumer starting", extra={"consumer": self.name, "reason": reason})
            await asyncio.sleep(backoff if reason == "error" else 0)
            backoff = min(backoff * 2, 5.0)

    def _stop_in_background(self, consumer: AIOKafkaConsumer) -> None:
        """Stop a member of a group that died with the broker's log while a fresh one joins the
        new log's group. Its stop is not waited for: aiokafka's fetcher, cut off from the old
        log, mostly never ends (``stop_consumer`` gives up on it after three rounds), and the
        fresh member would wait those seconds for nothing. The two share no connection, and
        nothing reads the old one's records any more."""
        stopping = asyncio.create_task(stop_consumer(consumer, timeout=1.0), name=f"{self.name}-stop")
        _STOPPING.add(stopping)
        stopping.add_done_callback(_STOPPING.discard)

    @property
    def assigned(self) -> bool:
        """True once the group gave this member partitions (startup waits for it in tests and demos)."""
        return self._assigned

    def restart(self) -> None:
        """The broker came back empty: read its new log again from the beginning.

        Neither the in-memory positions nor the group's committed offsets can be trusted: until
        this service noticed the reset, the member went on fetching the new log from its old
        positions (skipping whatever the new log held below them) and may have committed those.
        Events read twice are skipped by the inbox. A fetch or commit waiting on the old log is
        given up at once: the sooner the old member leaves, the sooner the new group forms."""
        self._restart = self._rewind = True
        self._restarting.set()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        """Apply batches until a broker reset asks for a fresh member. Every call to the broker
        is bounded in time, so a broker that stops answering ends this member instead of
        holding it for ever."""
        uncommitted: dict[TopicPartition, int] = {}  # applied, not yet committed to the broker
        next_commit = 0.0
        while not self._restart:
            batches = await self._broker_call(
                consumer.getmany(timeout_ms=500, max_records=self.settings.outbox_batch_size)
            )
            if batches is None:
                break  # a broker reset: a fresh member reads the new log
            self._assigned = bool(consumer.assignment())
            messages = [m for part in batches.values() for m in part]
            if messages:
                positions = {tp: part[-1].offset + 1 for tp, part in batches.items()}
                try:
                    await self.process(messages, positions)
                except Exception:
                    # Nothing of the batch was committed: rewind so it is read again.
                    for tp, part in batches.items():
                        consumer.seek(tp, part[0].offset)
                    raise
                uncommitted.update(positions)
            # For the broker's tools (lag per group) only: the group resumes from its own
            # positions. So at most once a second, or once the member is idle, not per batch
            # (a round trip to the broker each, when an event at a time flows).
            if uncommitted and (not messages or time.monotonic() >= next_commit):
                await self._commit_offsets(consumer, uncommitted)
                uncommitted, next_commit = {}, time.monotonic() + _COMMIT_INTERVAL

    async def _commit_offsets(self, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        try:
            # A partition the group moved elsewhere meanwhile is its new owner's to commit.
            assignment = consumer.assignment()  # a fresh set per call: read it once
            held = {tp: o for tp, o in positions.items() if tp in assignment}
            if held:
                await self._broker_call(consumer.commit(held))
        except (CommitFailedError, IllegalStateError):
            # The group rebalanced under this member (a broker that lost the group answers
            # so too): the coordinator rejoins by itself and the listener seeks on assignment.
            log.info("offset commit refused; rejoining", extra={"consumer": self.name})

    async def _broker_call(self, call: Awaitable[_T]) -> _T | None:
        """A broker call bounded by ``_KAFKA_CALL_TIMEOUT`` (past it ``TimeoutError`` ends this
        member), or None at once if a broker reset asks for a fresh member meanwhile."""
        task = asyncio.ensure_future(call)
        reset = asyncio.ensure_future(self._restarting.wait())
        try:
            done, _ = await asyncio.wait(
                {task, reset}, timeout=_KAFKA_CALL_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            reset.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if reset in done:
            return None
        raise TimeoutError("broker call")

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Seek every partition given to this member to where the group stands (its own record)."""
        async with self.pool.acquire() as conn:
            recorded = await consumer_positions.load(conn, self.name)
        for tp in assigned:
            start = consumer_positions.start_offset(recorded.get(tp), self.incarnation, self._rewind)
            if start is not None:
                consumer.seek(tp, start)
        log.info(
            "partitions assigned",
            extra={"consumer": self.name, "partitions": len(assigned), "from_log_start": self._rewind},
        )
        self._rewind = False

    async def process(
        self, messages: list[ConsumerRecord[bytes, bytes]], positions: dict[TopicPartition, int] | None = None
    ) -> None:
        """Handle one polled batch and record ``positions`` (``save_positions``) once it is
        applied: in its transaction where the batch has one, never before its effects."""
        raise NotImplementedError

    async def save_positions(
        self, conn: asyncpg.Connection, positions: dict[TopicPartition, int] | None
    ) -> None:
        """Record where the group stands after a batch (``shared.consumer_positions``)."""
        if positions:
            await consumer_positions.save(conn, self.name, positions, self.incarnation)


class _Seek(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands each assignment to the consumer, which seeks to the group's recorded positions."""

    def __init__(self, owner: GroupMember):
        self.owner = owner
        self.consumer: AIOKafkaConsumer | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.consumer is not None and assigned:
            await self.owner.on_assigned(self.consumer, assigned)
