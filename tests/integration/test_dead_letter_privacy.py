"""A dead letter says why by class, never by the row it could not store (DESIGN.md section 10:
operators see operations, not people).

A dead letter's reason is written three times where operators and broker readers look: the
service's ``dead_letters`` table (``exchangectl dlq list``), the ``dlq_reason`` header of the copy
on ``<topic>.dlq`` (every reader of that topic; the exchange's census counts it from there), and
the "message dead-lettered" log line. A driver error's text carries PostgreSQL's DETAIL line,
which quotes the failing row: dates, record ids and the table's name, "pregnancies" among them.

A row a registry's table refuses is no longer a dead letter: the notification is answered
``rejected``, naming the rule the same way (``test_registry_refused_by_constraint``).

The log line itself is one message's, one person's: like the dead-letter listings, the stream and
``dlq_messages_total`` beside it, it names a pregnancy's topic and type only by the neutral
category (``shared.sensitivity``), as the "event applied" line does.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord

from devstack.trust import TrustFiles
from services.migrant_exchange.entrypoints.consumer import event_consumer
from services.migrant_exchange.service_layer.indicators import operations_picture
from services.migrant_exchange.settings import ExchangeSettings
from shared.events.signature import sign_outgoing
from shared.sensitivity import NEUTRAL_CATEGORY, NEUTRAL_TOPIC
from tests.exchange.exchange_helpers import (
    SECRET,
    A,
    B,
    C,
    Registries,
    new_person,
    route,
)

REGISTERED_ON = "2025-03-01"


def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured line with its fields, as the JSON formatter writes them."""
    return [" ".join(str(v) for v in (rec.getMessage(), *vars(rec).values())) for rec in caplog.records]


async def test_the_dead_letter_log_line_names_a_pregnancy_only_by_the_neutral_category(
    exchange: asyncpg.Pool, trust: TrustFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """A woman of A living at B; C, with its own valid key, registers her pregnancy. The exchange's
    routing consumer refuses it (``not_authorized``) and dead-letters it: the letter keeps its
    topic and reason for the replay, the log line says "a restricted event"."""
    settings = ExchangeSettings(
        subject_key_secret=SECRET.decode(), trust_list_file=str(trust.trust_list), consumer_max_retries=1
    )
    r = Registries()
    mother = new_person()
    await route(exchange, settings, [r.person(mother, A, A, B)])
    data = {
        "pregnancy_id": str(uuid.uuid4()),
        "mother_id_number": mother,
        "registered_in": C,
        "registered_on": REGISTERED_ON,
    }
    lie = r.make("pregnancy.registered.v1", C, data, mother, origin=A, destination=C)
    value = sign_outgoing(trust.keyring(C), lie.model_dump_json().encode(), dt.datetime.now(dt.UTC))
    assert value is not None
    key = lie.subject.encode()
    message = ConsumerRecord("vital.pregnancy.v1", 0, 7, 0, 0, key, value, None, len(key), len(value), [])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        await event_consumer(exchange, settings).process([message])
    [letter] = await exchange.fetch("SELECT topic, reason FROM dead_letters")
    assert letter["topic"] == "vital.pregnancy.v1" and "not_authorized" in letter["reason"]
    [line] = [rec for rec in caplog.records if rec.getMessage() == "message dead-lettered"]
    assert line.topic == NEUTRAL_TOPIC  # type: ignore[attr-defined]
    assert line.reason.startswith("rejected: not_authorized: " + NEUTRAL_CATEGORY)  # type: ignore[attr-defined]
    told = [text for text in _logged(caplog) if "pregnan" in text.lower()]
    assert not told, told


async def test_a_reason_cut_short_for_the_dashboard_names_no_pregnancy(
    exchange: asyncpg.Pool, trust: TrustFiles
) -> None:
    """The dashboard's latest dead letters show each reason's first 160 characters. A malformed
    pregnancy event whose reason names ``data.pregnancy_id`` across that cut was shown as
    "data.pregn", which no longer read as a sensitive name when the listing neutralised it: the
    reason is kept neutral when the letter is stored, so every reader's cut is of neutral text."""
    settings = ExchangeSettings(subject_key_secret=SECRET.decode(), trust_list_file=str(trust.trust_list))
    doc = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/registry/{A}",
        "type": "pregnancy.registered.v1",
        "subject": "s" * 64,
        "time": "2026-02-01T00:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": "urn:migrant-exchange:schema:pregnancy.registered.v1",
        "sequence": "q",  # a second error before the data's: the field's name lands on the cut
        "data": {"pregnancy_id": "nope", "mother_id_number": new_person(), "registered_in": A},
    }
    value = orjson.dumps(doc)
    message = ConsumerRecord("vital.pregnancy.v1", 0, 9, 0, 0, b"k", value, None, 1, len(value), [])
    await event_consumer(exchange, settings).process([message])
    [stored] = await exchange.fetch("SELECT id, reason FROM dead_letters")
    assert stored["reason"].startswith("invalid event: ")
    async with exchange.acquire() as conn:
        picture = await operations_picture(conn)
    [shown] = [d for d in picture["dead_letters"]["latest"] if d["id"] == stored["id"]]
    assert len(shown["reason"]) == 160 and not re.search("preg", shown["reason"], re.IGNORECASE), shown
    assert not re.search("preg", stored["reason"], re.IGNORECASE)  # kept neutral
