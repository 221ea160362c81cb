"""A notification the counterpart's database refuses is answered ``rejected``, not dead-lettered.

The domain checks let through what only a table's constraint catches: here a registry (B) that
is mistaken, as DESIGN section 10 says a jurisdiction may be, announces a pregnancy whose delivery
is expected the day it was registered. The exchange routes it, sealed, to the mother's other
registry (A), whose table refuses the row (``expected_delivery > registered_on``). That refusal is
the notification's own and would come again on every retry, so A answers the exchange at once
with ``rejected``: the reason names the rule by class, SQLSTATE and constraint (neutrally), never
the driver's text, which quotes the row. The exchange closes the notification with that reason
instead of waiting for its deadline; A keeps nothing of the pregnancy, and a redelivery of the
same notification changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord

from devstack.trust import TrustFiles
from services.migrant_exchange.entrypoints.consumer import event_consumer
from services.migrant_exchange.settings import ExchangeSettings
from services.registry.entrypoints.consumer import consumers
from shared.events.signature import sign_outgoing
from shared.sensitivity import NEUTRAL_CATEGORY
from shared.trust import EXCHANGE
from tests.exchange.exchange_helpers import (
    SECRET,
    A,
    B,
    Registries,
    new_person,
    registry_of_a,
    route,
)

NOTIFICATIONS = "exchange.notification.v1"
FEEDBACK = "exchange.feedback.v1"
REGISTERED_ON = "2025-03-01"


def _delivered(row: asyncpg.Record, keyring: Any, topic: str, offset: int) -> ConsumerRecord[bytes, bytes]:
    """An outbox row as its service's relay signs it and the broker delivers it."""
    value = sign_outgoing(keyring, bytes(row["value"]), dt.datetime.now(dt.UTC))
    assert value is not None
    key = row["key"].encode()
    headers = [(k, v.encode()) for k, v in (row["headers"] or {}).items()]
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), headers)


async def test_a_row_the_counterpart_cannot_store_is_answered_rejected_naming_the_rule(
    exchange: asyncpg.Pool, pg: Any, trust: TrustFiles, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ExchangeSettings(subject_key_secret=SECRET.decode(), trust_list_file=str(trust.trust_list))
    r = Registries()
    mother = new_person()
    pregnancy_id = str(uuid.uuid4())
    registration = r.make(
        "pregnancy.registered.v1",
        B,
        {
            "pregnancy_id": pregnancy_id,
            "mother_id_number": mother,
            "registered_in": B,
            "registered_on": REGISTERED_ON,
            "expected_delivery": REGISTERED_ON,  # B's mistake: A's table refuses it
        },
        mother,
        origin=A,
        destination=B,
    )
    await route(exchange, settings, [r.person(mother, B, A, B), registration])
    rows = await exchange.fetch("SELECT key, value, headers FROM outbox WHERE event_type = $1", NOTIFICATIONS)
    [sent] = [x for x in rows if orjson.loads(x["value"])["data"]["event_id"] == str(registration.id)]
    notification_id = uuid.UUID(orjson.loads(sent["value"])["data"]["notification_id"])
    message = _delivered(sent, trust.keyring(EXCHANGE), NOTIFICATIONS, 41)

    pool, reg_settings = await registry_of_a(
        pg, trust, mother, "refused", trust_list_file=str(trust.trust_list), consumer_max_retries=1
    )
    try:
        notified = consumers(pool, reg_settings)[0]
        caplog.clear()  # the lines of this message alone (not the migrations' before it)
        with caplog.at_level(logging.INFO):
            await notified.process([message])
        assert await pool.fetchval("SELECT count(*) FROM pregnancies") == 0
        assert await pool.fetch("SELECT reason FROM dead_letters") == []
        [answer] = await pool.fetch("SELECT key, value, headers FROM outbox WHERE event_type = $1", FEEDBACK)
        feedback = orjson.loads(answer["value"])["data"]
        assert (feedback["notification_id"], feedback["outcome"]) == (str(notification_id), "rejected")
        reason = feedback["reason"]
        # The rule by class, SQLSTATE (a check constraint) and constraint, the table's name neutral.
        assert reason == (
            f"cannot apply {NEUTRAL_CATEGORY}: our records refuse it "
            f"(CheckViolationError: sqlstate 23514, constraint {NEUTRAL_CATEGORY})"
        ), reason
        logged = [" ".join(str(v) for v in (rec.getMessage(), *vars(rec).values())) for rec in caplog.records]
        for where, text in [("reason", reason), *(("log", line) for line in logged)]:
            for told in ("pregnan", "Failing row", REGISTERED_ON, pregnancy_id, mother):
                assert told not in text, f"the {where} tells {told!r}: {text}"

        # The exchange takes A's answer through its consumer and closes the notification with it.
        await event_consumer(exchange, settings).process([_delivered(answer, trust.keyring(A), FEEDBACK, 7)])
        [closed] = await exchange.fetch(
            "SELECT state, reason FROM notifications WHERE id = $1", notification_id
        )
        assert (closed["state"], closed["reason"]) == ("rejected", reason)

        # The broker delivers the notification again: A's inbox has it, nothing changes.
        before = await pool.fetchval("SELECT count(*) FROM outbox")
        await notified.process([message])
        assert await pool.fetchval("SELECT count(*) FROM outbox") == before
        assert await pool.fetchval("SELECT count(*) FROM pregnancies") == 0
        assert await pool.fetch("SELECT reason FROM dead_letters") == []
    finally:
        await pool.close()
