"""Confidential notifications: reading the broker as registry 440703 would (any reader of the
topic), nothing addressed to 320412 is in clear; a pregnancy notification's payload opens only
with its target's key, and the exchange purges the payload once the target applied it."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.events.catalog import ADDRESSEE_HEADER
from shared.events.payloads import SealedPayload
from shared.identity import subject_key
from shared.sealing import CannotOpen, notification_aad, open_sealed
from tests.helpers import Api, migrant, query, wait_until

pytestmark = pytest.mark.e2e
# Not inside a token: a subject key's hex can hold 18 digits in a row.
ID_NUMBER = re.compile(rb"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")


def _read_topic(stack: Stack, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    """Every message on the topic with its headers, read from the beginning by a consumer group of
    its own."""

    async def run() -> list[tuple[bytes, dict[str, bytes]]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.bootstrap,
            group_id=f"eavesdropper-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            values: list[tuple[bytes, dict[str, bytes]]] = []
            while batch := await consumer.getmany(timeout_ms=1500):
                values += [(m.value, dict(m.headers)) for part in batch.values() for m in part if m.value]
            return values
        finally:
            await consumer.stop()

    return asyncio.run(run())


def _pregnancy_for_origin(stack: Stack) -> tuple[str, dict[str, Any]]:
    """A woman of 320412 living in 440703 registers a pregnancy there; the exchange notifies 320412."""
    mother = migrant(stack, ORIGIN, DESTINATION, "孕妇", arrived=False)
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    dest_db = stack.service(f"registry-{DESTINATION}").dsn
    wait_until(lambda: query(dest_db, "SELECT 1 FROM persons WHERE id_number = $1", mother), timeout=15)
    preg = dest.post("/v1/pregnancies", {"mother_id_number": mother, "registered_on": "2025-05-01"})
    assert preg.status_code == 201, preg.text
    return mother, preg.json()


def test_a_pregnancy_notification_is_readable_by_its_target_only(stack: Stack) -> None:
    mother, pregnancy = _pregnancy_for_origin(stack)
    subject = subject_key(mother, stack.subject_secret.encode())
    exchange = stack.service("migrant_exchange").dsn
    [note] = wait_until(
        lambda: query(
            exchange,
            "SELECT id, state, payload FROM notifications WHERE subject = $1 "
            "AND event_type = 'pregnancy.registered.v1' AND state = 'applied'",
            subject,
        ),
        timeout=20,
    )
    # The target applied it, so it could read it ...
    origin_db = stack.service(f"registry-{ORIGIN}").dsn
    assert query(origin_db, "SELECT 1 FROM pregnancies WHERE id = $1", uuid.UUID(pregnancy["pregnancy_id"]))
    # ... and the exchange no longer keeps what it carried.
    assert note["payload"] is None

    messages = [(orjson.loads(v), h) for v, h in _read_topic(stack, "exchange.notification.v1")]
    sent = [(m, h) for m, h in messages if m["data"]["notification_id"] == str(note["id"])]
    assert sent, "the notification is on the broker"
    for message, headers in sent:
        data = message["data"]
        # other registries pass it over by this header, undecoded
        assert headers[ADDRESSEE_HEADER] == ORIGIN.encode()
        raw = orjson.dumps(message)
        assert data["payload"] == {} and data["sealed"] is not None
        assert mother.encode() not in raw and pregnancy["pregnancy_id"].encode() not in raw
        sealed = SealedPayload.model_validate(data["sealed"])
        aad = notification_aad(data["notification_id"], data["target_division"], data["event_type"])
        # 440703 (and anyone without 320412's key) cannot open it ...
        with pytest.raises(CannotOpen):
            open_sealed(sealed, stack.trust.keyring(DESTINATION).decryption_keys(DESTINATION), aad)
        stolen_kid = {
            sealed.kid: next(iter(stack.trust.keyring(DESTINATION).decryption_keys(DESTINATION).values()))
        }
        with pytest.raises(CannotOpen):
            open_sealed(sealed, stolen_kid, aad)  # even trying its own key under the target's kid
        # ... nor can the sealed payload be moved into another notification.
        with pytest.raises(CannotOpen):
            keys = stack.trust.keyring(ORIGIN).decryption_keys(ORIGIN)
            open_sealed(sealed, keys, notification_aad(uuid.uuid4(), ORIGIN, data["event_type"]))
        # The target opens it.
        opened = orjson.loads(open_sealed(sealed, stack.trust.keyring(ORIGIN).decryption_keys(ORIGIN), aad))
        assert opened["mother_id_number"] == mother and opened["pregnancy_id"] == pregnancy["pregnancy_id"]


def test_nothing_addressed_to_320412_is_in_clear_on_the_broker(stack: Stack) -> None:
    _pregnancy_for_origin(stack)  # at least one sensitive notification for 320412 is on the topic
    values = wait_until(
        lambda: [
            v
            for v, _ in _read_topic(stack, "exchange.notification.v1")
            if orjson.loads(v)["data"]["target_division"] == ORIGIN
        ],
        timeout=20,
    )
    for value in values:
        data = orjson.loads(value)["data"]
        assert data["payload"] == {}, data["event_type"]
        assert not ID_NUMBER.search(value), "an identity number in clear on the broker"
        if data["sealed"] is not None:
            sealed = SealedPayload.model_validate(data["sealed"])
            aad = notification_aad(data["notification_id"], ORIGIN, data["event_type"])
            with pytest.raises(CannotOpen):
                open_sealed(sealed, stack.trust.keyring(DESTINATION).decryption_keys(DESTINATION), aad)
