"""Operator commands: prove the audit chain intact, rebuild the read model by replay."""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.verification.settings import VerificationSettings
from shared import audit
from shared.db import create_pool

TOPICS = ("certificate.lifecycle.v1", "vital.correction.v1")


async def audit_verify(settings: VerificationSettings) -> int:
    """Exit 0 when the chain is intact; otherwise print the first broken row and exit 1."""
    pool = await create_pool(
        settings.database_url, min_size=1, max_size=1
    )  # jsonb decoded as the writer wrote it
    try:
        async with pool.acquire() as conn:
            broken = await audit.verify_chain(conn)
            rows = await conn.fetchval("SELECT count(*) FROM audit_log")
    finally:
        await pool.close()
    if broken is None:
        print(f"audit chain intact: {rows} rows")
        return 0
    print(f"audit chain broken at seq {broken} (of {rows} rows)")
    return 1


async def rebuild(settings: VerificationSettings) -> int:
    """Empty the read model and rewind the consumer group, so the next start replays the topics.

    Stop the service first: a running member of the group would keep its offsets. Keys learned
    from registries' JWKS are kept (the refresher re-confirms them); keys learned from events,
    certificates and revocations come back with the replay.
    """
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("TRUNCATE certificates, revocations")
            await conn.execute("DELETE FROM issuer_keys WHERE source = 'event'")
            await conn.execute("DELETE FROM inbox WHERE consumer = $1", settings.consumer_group)
    finally:
        await conn.close()
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=settings.consumer_group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p) for t in TOPICS for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        if starts:
            await consumer.commit(dict(starts))
    finally:
        await consumer.stop()
    print(f"read model emptied; {len(partitions)} partitions rewound for {settings.consumer_group}")
    return 0


def main(command: str, settings: VerificationSettings) -> int:
    return asyncio.run(audit_verify(settings) if command == "audit-verify" else rebuild(settings))
