"""Helpers of the exchange's end-to-end tests: people, events, publishing straight to the broker."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from typing import Any

from aiokafka import AIOKafkaProducer

from devstack.stack import Stack
from shared.events.catalog import spec_for
from shared.events.envelope import Envelope, new_event_id
from shared.identity import compose_id_number, subject_key
from tests.helpers import signed

A, B, C = "320412", "440703", "110101"
OFFLINE = "510104"  # has no registry: reads notifications and answers over REST
SECRET = b"dev-only-subject-key-change-me"
_serial = itertools.count(1)


def new_person(i: int | None = None, sex: str = "F") -> str:
    """A valid identity number unique within the test run."""
    n = next(_serial) if i is None else i
    born = dt.date(1970, 1, 1) + dt.timedelta(days=n % 9000)
    return compose_id_number("110101", born, 7 * (n // 9000) + n % 7, sex)


def event(
    event_type: str, producer: str, data: dict[str, Any], subject: str, sequence: int, **ext: Any
) -> Envelope[Any]:
    spec = spec_for(event_type)
    return Envelope[spec.payload](  # type: ignore[name-defined]
        id=new_event_id(),
        source=f"/registry/{producer}",
        type=event_type,
        subject=subject,
        time=dt.datetime.now(dt.UTC),
        dataschema=spec.dataschema,
        sequence=sequence,
        data=spec.payload.model_validate(data),
        **ext,
    )


def person_event(
    id_number: str, producer: str, hukou: str, residence: str, sequence: int = 1
) -> Envelope[Any]:
    born = f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"
    data = {
        "id_number": id_number,
        "name": "测试",
        "sex": "F",
        "birth_date": born,
        "hukou_division": hukou,
        "residence_division": residence,
    }
    return event(
        "person.registered.v1", producer, data, subject_key(id_number, SECRET), sequence, origin=hukou
    )


def produce(
    stack: Stack, messages: list[tuple[str, bytes | Envelope[Any]]], raw_key: bytes = b"poison"
) -> None:
    """Publish straight to the broker, as a registry's relay would (topic, signed event or raw bytes)."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False, linger_ms=5)
        await producer.start()
        try:
            for topic, msg in messages:
                if isinstance(msg, bytes):
                    await producer.send(topic, msg, key=raw_key)
                else:
                    await producer.send(topic, signed(stack, msg), key=msg.subject.encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())
