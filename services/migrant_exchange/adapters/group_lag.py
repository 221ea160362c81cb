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
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import all_topics
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)


class GroupLag:
    """Reads committed and end offsets; keeps one client per group between samples."""

    def __init__(self, settings: KafkaSettings):
        self.settings = settings
        self._ends: AIOKafkaConsumer | None = None
        self._groups: dict[str, AIOKafkaConsumer] = {}

    async def sample(self) -> list[dict[str, Any]]:
        """Rows ``{group, topic, lag}`` for every group with a committed offset on a topic."""
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
        rows = []
        for group in groups:
            committed = await self._committed(group, partitions)
            lag: dict[str, int] = {}
            for tp, offset in committed.items():
                if offset >= 0:
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(0, ends.get(tp, offset) - offset)
            rows += [{"group": group, "topic": t, "lag": n} for t, n in sorted(lag.items())] or [
                {"group": group, "topic": "(nothing committed yet)", "lag": 0}
            ]
        return rows

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
