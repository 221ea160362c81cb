"""The relay's batched send (``shared.kafka.send_all``) against the real broker.

A relay batch goes out as record batches per partition rather than message by message. What must
not change: every message arrives once, each key on the partition ``producer.send`` gives it (a
subject's events are ordered by their partition, whoever sent them), in the order sent; a
partition's run larger than one record batch goes in several; a keyless message and one too large
for a batch of its own still go.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import RecordMetadata

from devstack.embedded import Broker
from shared.kafka import Message, send_all
from shared.settings import KafkaSettings

TOPIC = "send-all.v1"
PARTITIONS = 4


@pytest.fixture
def settings(broker: Broker) -> Iterator[KafkaSettings]:
    yield KafkaSettings(kafka_bootstrap_servers=broker.bootstrap)


async def _topic(settings: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    finally:
        await admin.close()


async def _read(settings: KafkaSettings, count: int) -> list[tuple[int, bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(TOPIC, **settings.kafka_client_options(), auto_offset_reset="earliest")
    await consumer.start()
    got: list[tuple[int, bytes | None, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < count:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    got.extend((tp.partition, r.key, r.value or b"") for r in records)
    finally:
        await consumer.stop()
    return got


async def test_every_message_arrives_once_on_its_keys_partition_in_order(settings: KafkaSettings) -> None:
    await _topic(settings)
    producer = AIOKafkaProducer(**settings.kafka_client_options(), max_batch_size=64 * 1024, linger_ms=2)
    await producer.start()
    try:
        keys = [f"subject-{k}".encode() for k in range(40)]
        messages: list[Message] = [
            (TOPIC, keys[i % len(keys)], f"{i:06d}".encode() + b"x" * 3_000, [("n", str(i).encode())])
            for i in range(600)  # ~1.8 MB over 4 partitions: each partition's run takes several batches
        ]
        messages.insert(300, (TOPIC, None, b"keyless", []))
        messages.insert(450, (TOPIC, keys[3], b"large" + b"y" * 100_000, []))  # larger than a batch

        futures = await send_all(producer, messages)
        assert len(futures) == len(messages)
        answers = await asyncio.gather(*futures)
        assert all(isinstance(a, RecordMetadata) for a in answers)
        assert len(set(map(id, futures))) < len(messages) / 10  # a record batch answers for its messages

        # the partition each key gets from the producer's own partitioner
        where = {key: (await (await producer.send(TOPIC, b"probe", key=key))).partition for key in keys}
    finally:
        await producer.stop()

    got = await _read(settings, len(messages) + len(keys))
    sent = [m for m in got if m[2] != b"probe"]
    assert sorted(v for _, _, v in sent) == sorted(m[2] for m in messages)  # each once
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for partition, key, value in sent:
        if key is not None:
            assert partition == where[key], key
            by_key[key].append(value)
    for key in keys:
        assert by_key[key] == [m[2] for m in messages if m[1] == key], key
