"""Consumer lag of every group on the exchange's topics, as the broker sees it.

A service's own ``consumer_lag`` gauge covers only its own groups; the operations centre wants
every group at once (registries, exchange, verification), as ``kafka-consumer-groups --describe``
shows it: end offset minus committed offset, summed per topic. The broker we test on (Tansu)
answers ListGroups and OffsetFetch but not the admin client's OffsetFetch version, so committed
offsets are read with a group-named consumer that never subscribes (it does not join the group).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import all_topics
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)


# A group the broker forgot is shown as gone for this long, then dropped from the table.
FORGET_ABSENT_SECONDS = 3600.0


class GroupLag:
    """Reads committed and end offsets; keeps one client per group between samples.

    Each row has a ``state``: ``ok``; ``stalled`` when the group has records unread and its
    committed offsets have not moved for ``stall_seconds``; ``absent`` when a group seen before is
    gone from the broker (its consumer stopped, or the broker lost it): then how far behind it is
    cannot be read from the broker, and the row says so instead of showing 0.
    """

    def __init__(self, settings: KafkaSettings, stall_seconds: float = 60.0):
        self.settings = settings
        self.stall_seconds = stall_seconds
        self._ends: AIOKafkaConsumer | None = None
        self._groups: dict[str, AIOKafkaConsumer] = {}
        self._moved: dict[str, tuple[dict[TopicPartition, int], float]] = {}  # committed, when it moved
        self._last_seen: dict[str, float] = {}

    async def sample(self) -> list[dict[str, Any]]:
        """Rows ``{group, topic, lag, state}``: every group on the broker and every one that left it."""
        options = self.settings.kafka_client_options()
        admin = AIOKafkaAdminClient(**options, request_timeout_ms=3_000)
        await admin.start()
        try:
            groups = sorted(g[0] for g in await admin.list_consumer_groups())
        finally:
            await admin.close()
        if self._ends is None:
            self._ends = AIOKafkaConsumer(**options, enable_auto_commit=False)
            await self._ends.start()
        known = await self._ends.topics()
        partitions = [
            TopicPartition(t, p)
            for t in all_topics()
            if t in known
            for p in sorted(self._ends.partitions_for_topic(t) or ())
        ]
        ends = await self._ends.end_offsets(partitions)
        rows: list[dict[str, Any]] = []
        now = time.monotonic()
        for group in groups:
            committed = await self._committed(group, partitions)
            lag: dict[str, int] = {}
            for tp, offset in committed.items():
                if offset >= 0:
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends.get(tp, offset) - offset)
            state = self._state(group, committed, sum(lag.values()), now)
            rows += [
                {"group": group, "topic": t, "lag": n, "state": state} for t, n in sorted(lag.items())
            ] or [{"group": group, "topic": "(nothing committed yet)", "lag": 0, "state": state}]
        for group, seen in sorted(self._last_seen.items()):
            if group in groups:
                continue
            if now - seen > FORGET_ABSENT_SECONDS:
                del self._last_seen[group]
                continue
            rows.append(
                {"group": group, "topic": "(group gone from the broker)", "lag": None, "state": "absent"}
            )
        return rows

    def _state(self, group: str, committed: dict[TopicPartition, int], lag: int, now: float) -> str:
        self._last_seen[group] = now
        previous = self._moved.get(group)
        if previous is None or previous[0] != committed or lag == 0:
            self._moved[group] = (committed, now)
            return "ok"
        return "stalled" if now - previous[1] > self.stall_seconds else "ok"

    async def _committed(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        client = self._groups.get(group)
        if client is None:
            client = AIOKafkaConsumer(
                **self.settings.kafka_client_options(), group_id=group, enable_auto_commit=False
            )
            await client.start()
            self._groups[group] = client
        # One OffsetFetch for all partitions (the public committed() asks one partition at a time).
        found = await client._coordinator.fetch_committed_offsets(set(partitions))
        return {tp: (meta.offset if meta is not None else -1) for tp, meta in found.items()}

    async def close(self) -> None:
        for client in [self._ends, *self._groups.values()]:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._ends, self._groups = None, {}
