"""Signed checkpoints of the audit chain's head, published outside the database.

The hash chain (``shared.audit``) shows an edited row to anyone who recomputes it, but a
writer who rewrites the chain from some row on, or cuts off its tail, leaves a chain that
checks. So every ``audit_checkpoint_interval`` seconds each service signs its chain head
(sequence number and hash) with its audit-checkpoint key (Ed25519, from a Secret in
production) and publishes it to the ``audit.checkpoint.v1`` topic and to its own log. A
checkpoint is a compact JWS, not a CloudEvent: nothing consumes it but the auditor's
``exchangectl audit verify --anchor``, which checks the chain against every one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import audit, signing
from shared.kafka import AUDIT_CHECKPOINT_TOPIC, make_producer
from shared.observability import Duty
from shared.settings import BaseServiceSettings, KafkaSettings

log = logging.getLogger(__name__)

CHECKPOINT_TOPIC = AUDIT_CHECKPOINT_TOPIC
CHECKPOINT_TYPE = "audit-checkpoint"


@dataclass(frozen=True)
class CheckpointKey:
    kid: str
    key: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return signing.public_bytes(self.key)


@dataclass(frozen=True)
class Checkpoint:
    service: str
    seq: int
    hash: bytes
    at: dt.datetime
    kid: str


def kid_of(public_raw: bytes) -> str:
    return "audit-" + hashlib.sha256(public_raw).hexdigest()[:16]


def load_key(configured: str | None) -> CheckpointKey:
    """The configured key (base64url of 32 raw bytes); outside production, a key of this run."""
    if configured:
        key = Ed25519PrivateKey.from_private_bytes(signing.b64u_decode(configured))
    else:
        key = signing.new_private_key()
        log.warning("no AUDIT_CHECKPOINT_KEY: checkpoints are signed with a key of this run only")
    return CheckpointKey(kid_of(signing.public_bytes(key)), key)


def sign_checkpoint(service: str, head: tuple[int, bytes], key: CheckpointKey, now: dt.datetime) -> str:
    claims = {
        "typ": CHECKPOINT_TYPE,
        "service": service,
        "seq": head[0],
        "hash": head[1].hex(),
        "at": now.isoformat(),
    }
    return signing.sign(claims, key.key, key.kid)


def read_checkpoint(token: str, public_keys: dict[str, bytes]) -> Checkpoint:
    """Check a checkpoint's signature against the pinned keys (kid -> raw key) and parse it.

    Raises ``signing.BadSignature`` for a forged, altered or unknown-key checkpoint.
    """
    claims = signing.verify(token, public_keys)
    if claims.get("typ") != CHECKPOINT_TYPE:
        raise signing.BadSignature("not an audit checkpoint")
    try:
        return Checkpoint(
            service=str(claims["service"]),
            seq=int(claims["seq"]),
            hash=bytes.fromhex(str(claims["hash"])),
            at=dt.datetime.fromisoformat(str(claims["at"])),
            kid=str(signing.unverified_header(token)["kid"]),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise signing.BadSignature("checkpoint claims are malformed") from e


class AuditCheckpointer:
    """Signs and publishes the chain head whenever it moved, every interval."""

    def __init__(self, pool: asyncpg.Pool, settings: BaseServiceSettings):
        self.pool = pool
        self.settings = settings
        configured = settings.audit_checkpoint_key
        self.key = load_key(configured.get_secret_value() if configured else None)
        self.last: tuple[int, bytes] | None = None
        log.info(
            "audit checkpoint key",
            extra={"audit_kid": self.key.kid, "audit_public_key": signing.b64u(self.key.public_raw)},
        )

    async def run(self) -> None:
        producer = make_producer(self.settings)
        started = False
        rounds = Duty(self.settings.service_name, "audit-checkpoint")
        try:
            while True:
                await asyncio.sleep(self.settings.audit_checkpoint_interval)
                try:
                    with rounds.round():
                        if not started:
                            await producer.start()
                            started = True
                        await self.checkpoint_once(producer)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the next round tries again; the chain itself is safe
                    log.warning("audit checkpoint not published", extra={"error": type(e).__name__})
        finally:
            if started:
                await producer.stop()

    async def checkpoint_once(self, producer: AIOKafkaProducer) -> str | None:
        """Publish the head if it moved since the last checkpoint; returns the token sent."""
        async with self.pool.acquire() as conn:
            head = await audit.head(conn)
            anchored = await audit.hashes_at(conn, [self.last[0]]) if self.last is not None else {}
        if head is None or head == self.last:
            return None
        if self.last is not None and (head[0] <= self.last[0] or anchored.get(self.last[0]) != self.last[1]):
            # Rows this process already anchored are gone or changed (a chain rewritten from some
            # row on and extended since checks alone): never sign over that.
            log.error("audit chain changed behind its last checkpoint", extra={"audit_seq": self.last[0]})
            return None
        token = sign_checkpoint(self.settings.service_name, head, self.key, dt.datetime.now(dt.UTC))
        await producer.send_and_wait(
            CHECKPOINT_TOPIC, token.encode(), key=self.settings.service_name.encode()
        )
        log.info(
            "audit checkpoint",
            extra={"audit_seq": head[0], "audit_hash": head[1].hex(), "audit_checkpoint": token},
        )
        self.last = head
        return token


async def unchanged_through(conn: asyncpg.Connection, checkpoints: list[Checkpoint]) -> int:
    """The highest checkpointed seq up to which every checkpoint still matches its row (0: none).

    When a chain was rewritten with fresh hashes, the first changed row lies after this one and
    at or before the first checkpoint that no longer matches.
    """
    ordered = sorted(checkpoints, key=lambda c: c.seq)
    stored = await audit.hashes_at(conn, [c.seq for c in ordered])
    through = 0
    for c in ordered:
        if stored.get(c.seq) != c.hash:
            break
        through = c.seq
    return through


async def latest_checkpoints(
    settings: KafkaSettings, public_keys: dict[str, dict[str, bytes]], timeout: float = 10.0
) -> dict[str, Checkpoint]:
    """The newest correctly signed checkpoint of each service (service -> pinned kid -> key)."""
    every = await all_checkpoints(settings, public_keys, timeout)
    return {service: max(found, key=lambda c: c.seq) for service, found in every.items() if found}


async def all_checkpoints(
    settings: KafkaSettings, public_keys: dict[str, dict[str, bytes]], timeout: float = 10.0
) -> dict[str, list[Checkpoint]]:
    """Every correctly signed checkpoint of each service, in the order published.

    Reads the whole checkpoint topic with no consumer group; checkpoints whose signature does
    not verify under the service's pinned keys are skipped (and logged), never trusted.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, list[Checkpoint]] = {}
    try:
        if CHECKPOINT_TOPIC not in await consumer.topics():  # also loads the topic's metadata
            return found
        partitions = consumer.partitions_for_topic(CHECKPOINT_TOPIC) or set()
        tps = [TopicPartition(CHECKPOINT_TOPIC, p) for p in partitions]
        if not tps:
            return found
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + timeout
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the audit checkpoint topic could not be read to its end")
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    _keep(found, record.key, record.value, public_keys)
    finally:
        await consumer.stop()
    return found


def _keep(
    found: dict[str, list[Checkpoint]],
    key: bytes | None,
    value: bytes | None,
    keys: dict[str, dict[str, bytes]],
) -> None:
    service = (key or b"").decode(errors="replace")
    if service not in keys or value is None:
        return
    try:
        checkpoint = read_checkpoint(value.decode(errors="replace"), keys[service])
    except signing.BadSignature as e:
        log.warning("ignoring an audit checkpoint", extra={"service": service, "reason": str(e)})
        return
    if checkpoint.service == service:
        found.setdefault(service, []).append(checkpoint)
