"""Helpers of the exchange's tests: people, events, publishing straight to the broker, and a
migrated exchange database that routes events with the routing consumer's own handler."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from devstack.credentials import EXCHANGE_SERVICE
from devstack.stack import Stack
from services.migrant_exchange.service_layer import messagebus
from services.migrant_exchange.settings import ExchangeSettings
from shared.auth import DEFAULT_SCOPES, hash_secret
from shared.db import create_pool, migrate, unit_of_work
from shared.events.catalog import spec_for
from shared.events.envelope import Envelope, new_event_id
from shared.identity import compose_id_number, subject_key
from shared.outbox import batched
from tests.helpers import Api, query, signed, wait_until

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


EXCHANGE_MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "migrant_exchange" / "migrations"


@contextlib.asynccontextmanager
async def migrated_exchange(
    pg: Any, prefix: str, visible: dict[str, Any] | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated exchange database where every pair agrees on every event type
    (``visible``: the agreement's fields per event type, none withheld without it)."""
    dsn = pg.create_database(f"{prefix}_{uuid.uuid4().hex[:12]}")
    await migrate(dsn, "migrant_exchange", EXCHANGE_MIGRATIONS)
    made = await create_pool(dsn, min_size=1, max_size=2)
    await made.execute(
        "INSERT INTO agreements VALUES ('*', '*', $1, 3600, $2::text::jsonb)",
        ["*"],
        orjson.dumps(visible or {}).decode(),
    )
    try:
        yield made
    finally:
        await made.close()


async def route(pool: asyncpg.Pool, settings: ExchangeSettings, events: list[Envelope[Any]]) -> None:
    """The routing consumer's handler on each event, one unit of work each, as separate fetches."""
    handle = messagebus.in_order(settings)
    for e in events:
        async with unit_of_work(pool) as conn, batched(conn):
            await handle(conn, e)


class Registries:
    """Events numbered per subject and producing registry, as the registries' outboxes number them."""

    def __init__(self) -> None:
        self.seq: dict[tuple[str, str], int] = {}

    def make(
        self, event_type: str, producer: str, data: dict[str, Any], id_number: str, **ext: Any
    ) -> Envelope[Any]:
        subject = subject_key(id_number, SECRET)
        n = self.seq[(subject, producer)] = self.seq.get((subject, producer), 0) + 1
        return event(event_type, producer, data, subject, n, **ext)

    def person(
        self, id_number: str, producer: str, hukou: str, residence: str, sex: str = "F"
    ) -> Envelope[Any]:
        e = person_event(id_number, producer, hukou, residence)
        if sex != "F":
            data = {**e.data.model_dump(mode="json"), "sex": sex}
            e = e.model_copy(update={"data": type(e.data).model_validate(data)})
        n = self.seq[(e.subject, producer)] = self.seq.get((e.subject, producer), 0) + 1
        return e.model_copy(update={"sequence": n})

    def move(
        self, kind: str, producer: str, who: str, hukou: str, src: str, dst: str, date: str = "2025-04-01"
    ) -> Envelope[Any]:
        data = {
            "migration_id": str(uuid.uuid4()),
            "id_number": who,
            "name": "测试",
            "hukou_division": hukou,
            "from_division": src,
            "to_division": dst,
            "migration_date": date,
        }
        return self.make(f"migration.{kind}.v1", producer, data, who, origin=hukou, destination=dst)

    def pregnancy(
        self, producer: str, mother: str, pregnancy_id: str | None = None, **ext: Any
    ) -> Envelope[Any]:
        """Registered at the producer, its place of record (so the envelope's check passes)."""
        data = {
            "pregnancy_id": pregnancy_id or str(uuid.uuid4()),
            "mother_id_number": mother,
            "registered_in": producer,
            "registered_on": "2025-03-01",
        }
        return self.make("pregnancy.registered.v1", producer, data, mother, **ext)


async def registry_of_a(
    pg: Any, trust: Any, mother: str, name: str, **settings: Any
) -> tuple[asyncpg.Pool, Any]:
    """A's registry on a fresh migrated database, holding A's keys (``trust``, a ``TrustFiles``),
    with the mother on record (hukou A, living at B): its pool and settings (``settings``: more
    of them)."""
    from services.registry.settings import RegistrySettings

    dsn = pg.create_database(f"{name}_reg_{uuid.uuid4().hex[:12]}")
    await migrate(
        dsn, "registry", Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"
    )
    pool = await create_pool(dsn, min_size=1, max_size=2)
    await pool.execute(
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date,
                                hukou_division, residence_division, source_division)
           VALUES ($1, $2, $3, '母亲', 'F', $4, $1, $5, $1)""",
        A,
        mother,
        subject_key(mother, SECRET),
        dt.date.fromisoformat(f"{mother[6:10]}-{mother[10:12]}-{mother[12:14]}"),
        B,
    )
    made = RegistrySettings(
        database_url=dsn,
        jurisdictions=A,
        subject_key_secret=SECRET.decode(),
        event_keys_file=str(trust.keys_file(A)),
        **settings,
    )
    return pool, made


def registry_api(stack: Stack, code: str) -> Api:
    """The registry of ``code`` over HTTP, as its own registrar system (``reg-<code>``)."""
    return Api(stack, f"registry-{code}", f"reg-{code}")


def ok(r: Any) -> Any:
    """The body (an object or a list) of a request that must have succeeded (200 or 201)."""
    assert r.status_code in (200, 201), r.text
    return r.json()


def applied_at(stack: Stack, event_id: str) -> set[str]:
    """The registries that applied the notifications of ``event_id`` (as the exchange closed them)."""
    rows = query(
        stack.service("migrant_exchange").dsn,
        "SELECT target_division, state FROM notifications WHERE event_id = $1",
        event_id,
    )
    return {r["target_division"] for r in rows if r["state"] == "applied"}


def pregnant_at_b(stack: Stack) -> tuple[str, str]:
    """A woman of A living at B, whose pregnancy B registered and A was sent (and applied): her
    identity number and the pregnancy id."""
    mother = new_person()
    born = f"{mother[6:10]}-{mother[10:12]}-{mother[12:14]}"
    person = {"id_number": mother, "name": "林小兰", "sex": "F", "birth_date": born,
              "hukou_division": A, "residence_division": B}  # fmt: skip
    made = ok(registry_api(stack, A).post("/v1/persons", person))
    wait_until(lambda: applied_at(stack, made["event_id"]) == {B}, timeout=15)
    registered = ok(registry_api(stack, B).post("/v1/pregnancies", {"mother_id_number": mother}))
    wait_until(lambda: applied_at(stack, registered["event_id"]) == {A}, timeout=15)
    return mother, str(registered["pregnancy_id"])


def pregnancy_registered(stack: Stack, at: str, hukou: str) -> tuple[str, dict[str, Any]]:
    """A woman of ``hukou`` living at ``at``, registered there with her pregnancy (registered on
    2026-02-01, due 2026-10-20): her identity number and the registry's answer to the pregnancy."""
    registry = registry_api(stack, at)
    her = new_person()
    born = f"{her[6:10]}-{her[10:12]}-{her[12:14]}"
    person = {"id_number": her, "name": "林芳", "sex": "F", "birth_date": born}
    ok(registry.post("/v1/persons", person | {"hukou_division": hukou, "residence_division": at}))
    pregnancy = {"mother_id_number": her, "registered_on": "2026-02-01", "expected_delivery": "2026-10-20"}
    return her, ok(registry.post("/v1/pregnancies", pregnancy))


def rest_only_client(stack: Stack, client_id: str) -> httpx.Client:
    """A REST client of 510104 (``OFFLINE``: no registry on Kafka) under ``client_id``, with a
    fresh secret."""
    secret = uuid.uuid4().hex
    query(
        stack.service("migrant_exchange").dsn,
        """INSERT INTO clients (client_id, kind, jurisdiction, scopes, secret_hash) VALUES ($1, 'jurisdiction', $2, $3, $4)
           ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash""",
        client_id,
        OFFLINE,
        DEFAULT_SCOPES["jurisdiction"],
        hash_secret(secret),
    )
    return httpx.Client(
        base_url=stack.service("migrant_exchange").url,
        headers={"Authorization": f"Bearer {client_id}.{secret}"},
        timeout=10,
    )


def reconciliation_settings(stack: Stack, **extra: Any) -> ExchangeSettings:
    """The exchange's settings for running reconciliation from a test as the exchange does: its
    database, every registry of the stack over HTTP, and the exchange's service credential."""
    urls = ",".join(
        f"{s.jurisdictions[0]}={s.url}" for s in stack.services if s.module == "services.registry"
    )
    return ExchangeSettings(
        database_url=stack.service("migrant_exchange").dsn,
        registry_urls=urls,
        registry_token=stack.token(EXCHANGE_SERVICE),
        **extra,
    )
