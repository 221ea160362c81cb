"""aiokafka clients configured the one way this project uses them, and topic provisioning.

The brokers we test against (Tansu) have no idempotent producer, so it stays off: delivery
is at least once, and the outbox and inbox make it effectively once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.producer.message_accumulator import BatchBuilder
from murmurhash2 import murmurhash2

from shared.events.catalog import DLQ_SUFFIX, TOPICS
from shared.settings import BaseServiceSettings, KafkaSettings

log = logging.getLogger(__name__)


# Signed audit chain heads (shared.audit_anchor): JWS records, not CloudEvents, and no DLQ.
AUDIT_CHECKPOINT_TOPIC = "audit.checkpoint.v1"


def all_topics() -> list[str]:
    """Every topic of the exchange and its dead-letter topic, and the audit checkpoint topic."""
    return [t for topic in TOPICS for t in (topic, topic + DLQ_SUFFIX)] + [AUDIT_CHECKPOINT_TOPIC]


def make_producer(settings: BaseServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **settings.kafka_client_options(),
        client_id=settings.service_name,
        acks="all",
        enable_idempotence=False,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
    )


# A message to send: topic, key (None: any partition), value, headers.
Message = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]

# What the producer or the broker says of one message that sending it again cannot change: it is
# larger than the producer's ``max_request_size`` or the broker's limit, or its topic's name is
# refused. Errors of the connection, the cluster or the credentials are not here: they pass.
REFUSED_FOR_GOOD: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
)


def _refused(error: KafkaError) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


# The Java client's murmur2 seed (``org.apache.kafka.common.utils.Utils.murmur2``).
_MURMUR2_SEED = 0x9747B28C


def _key_hash(key: bytes) -> int:
    """The Java client's (and aiokafka's ``DefaultPartitioner``'s) hash of a key. aiokafka's
    own murmur2 is pure Python (~16 µs for a 64-byte subject key, several times per event on
    its way); ``murmurhash2``'s is compiled (~0.4 µs) and gives the same numbers (tested)."""
    return murmurhash2(key, _MURMUR2_SEED) & 0x7FFFFFFF


async def send_all(producer: AIOKafkaProducer, messages: Sequence[Message]) -> list[asyncio.Future[object]]:
    """Send ``messages``, each partition's in their order, as few record batches as fit; one
    future per message, done when its batch is acknowledged (with the batch's metadata).

    ``producer.send`` costs a future, an accumulator look-up and a key hash per message; a relay
    batch of hundreds pays them once per record batch instead. A keyed message goes to the
    partition ``producer.send`` would choose (the default partitioner: murmur2 of the key over the
    topic's partitions by id), so a subject's events keep one partition whichever way they were
    sent. A message without a key, or too large for a batch of its own, goes by ``send``.

    A message the producer refuses for good (``REFUSED_FOR_GOOD``: larger than its
    ``max_request_size``) gets a future that holds that error; the others are sent.
    """
    futures: dict[int, asyncio.Future[object]] = {}
    partitions: dict[str, list[int]] = {}
    runs: dict[tuple[str, int], list[int]] = {}
    for i, (topic, key, value, headers) in enumerate(messages):
        if key is None:
            try:
                futures[i] = await producer.send(topic, value, key=None, headers=headers)
            except REFUSED_FOR_GOOD as e:
                futures[i] = _refused(e)
            continue
        ids = partitions.get(topic)
        if ids is None:
            ids = partitions[topic] = sorted(await producer.partitions_for(topic))
        runs.setdefault((topic, ids[_key_hash(key) % len(ids)]), []).append(i)

    for (topic, partition), indexes in runs.items():
        batch: BatchBuilder = producer.create_batch()
        members: list[int] = []
        for i in indexes:
            _, key, value, headers = messages[i]
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is not None:
                members.append(i)
                continue
            if members:  # full: what it holds goes, this message opens the next batch
                future = await producer.send_batch(batch, topic, partition=partition)
                futures.update(dict.fromkeys(members, future))
                batch, members = producer.create_batch(), []
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is not None:
                    members.append(i)
                    continue
            # larger than a batch: ``send`` raises what the producer says of it
            try:
                futures[i] = await producer.send(topic, value, key=key, headers=headers, partition=partition)
            except REFUSED_FOR_GOOD as e:
                futures[i] = _refused(e)
            batch = producer.create_batch()
        if members:
            future = await producer.send_batch(batch, topic, partition=partition)
            futures.update(dict.fromkeys(members, future))
    return [futures[i] for i in range(len(messages))]


def make_consumer(
    settings: BaseServiceSettings,
    group_id: str,
    topics: list[str],
    listener: ConsumerRebalanceListener | None = None,
    *,
    background: bool = False,
) -> AIOKafkaConsumer:
    """A consumer of ``topics`` that never makes the broker create one of them.

    A consumer subscribed by name asks for those topics' metadata, and a broker that creates
    topics on such a request (Tansu does, with its own partition count; so does Kafka with
    ``auto.create.topics.enable``) would, after coming back empty, recreate them before
    ``ensure_topics`` could: with fewer partitions than the producers still address, whose
    writes to the missing partitions are acknowledged and lost. A pattern subscription reads
    the metadata of existing topics only and picks topics up once ``ensure_topics`` made them.
    """
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        client_id=f"{settings.service_name}-{group_id}",
        group_id=group_id,
        enable_auto_commit=False,  # offsets are committed after the database transaction
        auto_offset_reset="earliest",
        metadata_max_age_ms=5_000,
        max_poll_records=500,
        # Kafka answers a fetch once records arrive; Tansu looks for them at intervals that
        # grow with the wait, and each look costs it CPU (see docs/scale.md): consumers no
        # event's delivery waits on poll at the long, background wait.
        fetch_max_wait_ms=(
            settings.background_fetch_max_wait_ms if background else settings.consumer_fetch_max_wait_ms
        ),
        group_instance_id=settings.kafka_group_instance_id,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        # How long a rebalance waits for the members it knew to rejoin. Members rejoin in the
        # background within a heartbeat; a longer wait only matters for one that left without
        # saying so (replaced after a broker reset or an error), and holds the whole group.
        rebalance_timeout_ms=3_000,
    )
    consumer.subscribe(
        pattern="^(" + "|".join(re.escape(t) for t in sorted(topics)) + ")$", listener=listener
    )
    return consumer


async def stop_consumer(consumer: AIOKafkaConsumer, timeout: float = 3.0) -> None:
    """Stop a consumer for certain, within a bounded time.

    aiokafka 0.14's fetcher can swallow its own cancellation: ``Fetcher._fetch_requests_routine``
    awaits the fetch tasks it cancels inside ``contextlib.suppress(CancelledError)``, so when
    ``Fetcher.close()`` cancels the routine during that await (which is exactly when an
    assignment was just revoked, e.g. after a ``CommitFailedError`` on a broker that lost the
    group), the cancellation is taken for the fetch task's and the routine goes on to wait for
    an assignment that never comes. ``consumer.stop()`` then never returns (aio-libs/aiokafka
    #983 describes the same swallowing). Cancelling the routine once more ends it.
    """
    stopping = asyncio.ensure_future(consumer.stop())
    for _ in range(3):
        done, _pending = await asyncio.wait({stopping}, timeout=timeout)
        if done:
            with contextlib.suppress(Exception):
                stopping.result()
            return
        fetch_task = getattr(getattr(consumer, "_fetcher", None), "_fetch_task", None)
        if fetch_task is not None and not fetch_task.done():
            log.warning("consumer stop stuck in the fetcher; cancelling its routine again")
            fetch_task.cancel()
    stopping.cancel()
    log.error("consumer did not stop; abandoned")


async def end_offsets(probe: AIOKafkaConsumer, topics: list[str]) -> dict[TopicPartition, int]:
    """The log-end offset of every partition of ``topics`` the broker has (a group-less client)."""
    known = await probe.topics()  # fresh metadata: topics recreated after a broker reset included
    partitions = [
        TopicPartition(t, p)
        for t in topics
        if t in known
        for p in sorted(probe.partitions_for_topic(t) or ())
    ]
    return dict(await probe.end_offsets(partitions)) if partitions else {}


async def committed_offsets(
    settings: KafkaSettings, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offsets ``group`` committed to the broker on ``partitions`` (those it has none on left out)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=5_000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def make_probe(settings: KafkaSettings) -> AIOKafkaConsumer:
    """A consumer in no group that only asks for metadata and end offsets."""
    return AIOKafkaConsumer(
        **settings.kafka_client_options(),
        enable_auto_commit=False,
        metadata_max_age_ms=5_000,
        request_timeout_ms=5_000,
    )


async def missing_topics(settings: KafkaSettings, topics: list[str] | None = None) -> list[str]:
    """The topics the broker does not have (after a restart of a memory-only broker: all of them)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=5_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [t for t in (topics or all_topics()) if t not in existing]


# A topic named with this prefix and a random suffix marks one "life" of the broker. Whoever
# (re)creates the exchange's topics also creates a marker if there is none, so every service can
# tell that the broker came back empty even if another service already recreated the topics.
INCARNATION_PREFIX = "_broker.incarnation."


def incarnation_of(names: set[str]) -> str | None:
    markers = sorted(n for n in names if n.startswith(INCARNATION_PREFIX))
    return markers[0] if markers else None  # concurrent creators agree on the smallest


async def topic_names(settings: KafkaSettings) -> set[str]:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=5_000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def ensure_topics(settings: KafkaSettings, topics: list[str] | None = None) -> list[str]:
    """Create whichever topics are missing, with the configured partitions and replication.

    A topic this call created must be empty. A memory-only broker that restarted takes writes
    for topics it no longer has: a producer's batch that was in flight when it went down is
    stored at offset 0 on its return, and the topic created after it starts its offsets at 0
    again. The next records acknowledged at offsets inside that batch can never be read (a
    consumer reading the batch at 0 skips past them). So a topic created here that already
    holds records is deleted and created again: what it held was sent to the broker's previous
    life, and every relay sends its recent events again once the reset has settled."""
    wanted = topics or all_topics()
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), request_timeout_ms=5_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        new = [
            NewTopic(t, settings.kafka_topic_partitions, settings.kafka_topic_replication) for t in missing
        ]
        if incarnation_of(existing) is None:
            new.append(NewTopic(INCARNATION_PREFIX + uuid.uuid4().hex, 1, settings.kafka_topic_replication))
        if new:
            created = await _create(admin, new)  # another service may have created some first
            log.info("topics created", extra={"count": len(missing)})
            if stale := await _holding_records(settings, [t.name for t in new if t.name in created]):
                log.warning(
                    "topics created empty held records sent before; created again",
                    extra={"count": len(stale)},
                )
                await admin.delete_topics(stale)
                await _create(admin, [t for t in new if t.name in stale])
        return missing
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> set[str]:
    """Create ``topics``; the names this request created. A topic that already existed is not
    raised but answered with its own error code (36), as every other refusal is."""
    response = await admin.create_topics(topics)
    return {name for name, code, *_ in response.topic_errors if code == 0}


async def _holding_records(settings: KafkaSettings, topics: list[str]) -> list[str]:
    """Those of ``topics`` with a partition whose log does not end at offset 0."""
    if not topics:
        return []
    probe = make_probe(settings)
    await probe.start()
    try:
        ends = await end_offsets(probe, topics)
    finally:
        await probe.stop()
    return sorted({tp.topic for tp, end in ends.items() if end > 0})


async def wait_for_broker(settings: BaseServiceSettings, timeout: float = 30.0) -> None:
    """Block until the broker answers a metadata request."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await missing_topics(settings, [])
            return
        except (KafkaError, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
