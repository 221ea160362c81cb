"""Small helpers shared by the tests: people who pass validation, an API client, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import Stack
from shared.db import create_pool, migrate
from shared.events import payloads as p
from shared.events.envelope import Envelope, new_event_id
from shared.identity import compose_id_number

T = TypeVar("T")
_serial = itertools.count()
_FIRST_BIRTHDAY = dt.date(1985, 1, 1) + dt.timedelta(days=random.randrange(3650))
_births = itertools.count(random.randrange(1, 10**8))


async def lock_waiters(conn: asyncpg.Connection, n: int, unless: asyncio.Future[Any] | None = None) -> None:
    """Until ``n`` other sessions of this database wait for a lock, or ``unless`` is done (it waited
    for none). Read afresh each time: in a transaction, ``pg_stat_activity`` is read once and kept
    (a holder's transaction would otherwise keep its first, too early, reading)."""
    for _ in range(500):
        if unless is not None and unless.done():
            return
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await conn.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"""
        )
        if waiting >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{n} sessions never waited for a lock")


def read_topic(stack: Stack, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    """Every message on the topic with its headers, read from the beginning by a reader in no
    consumer group (all partitions, no group to join), as any reader of the broker gets them."""
    from aiokafka import AIOKafkaConsumer

    async def run() -> list[tuple[bytes, dict[str, bytes]]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.bootstrap,
            group_id=None,
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


def person_id(sex: str = "F", born: dt.date | None = None) -> str:
    """A fresh valid identity number (birth place 110101, which GB/T 2260 knows for every year).

    Without ``born``, no two calls in one test run give the same number: the n-th call is the
    (n mod 500)-th person born on the (n div 500)-th day after a random day in 1985-1994, so a
    test that checks a forged person left no trace never meets an earlier test's person.
    """
    n = next(_serial)
    return compose_id_number("110101", born or _FIRST_BIRTHDAY + dt.timedelta(days=n // 500), n % 500, sex)


def medical_certificate() -> str:
    return f"O{next(_births) % 10**9:09d}"


class Api:
    """A client of one service, authenticated as one of the stack's demo clients."""

    def __init__(self, stack: Stack, service: str, client_id: str):
        self.base = stack.service(service).url
        self.http = httpx.Client(
            base_url=self.base, timeout=10, headers={"Authorization": f"Bearer {stack.token(client_id)}"}
        )

    def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return self.http.post(path, json=body, headers=headers)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)


def wait_until(check: Callable[[], T], timeout: float = 5.0, interval: float = 0.05) -> T:
    """Poll until ``check`` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout}s (last value {value!r})"
    return value


def query(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def tamper(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run SQL as a superuser with triggers off: the only way left to change audit rows."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SET session_replication_role = replica")
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


async def rewrite_audit_chain(conn: asyncpg.Connection, seq: int) -> None:
    """A superuser (triggers off) changes every row's verdict from ``seq`` on and recomputes the
    hashes from there: a chain that checks alone, which only its checkpoints can show rewritten.
    ``conn`` decodes jsonb as the services do (``shared.db.init_connection``)."""
    from shared import audit

    await conn.execute("SET session_replication_role = replica")
    rows = await conn.fetch("SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq", seq)
    prev = bytes(rows[0]["prev_hash"])
    for r in rows:
        detail = {**r["detail"], "result": "valid"}
        entry = audit.AuditEntry(r["client_id"], r["action"], r["purpose"], r["subject"], detail, r["at"])
        digest = audit.entry_hash(prev, r["seq"], entry)
        await conn.execute(
            "UPDATE audit_log SET detail = $2, prev_hash = $3, hash = $4 WHERE seq = $1",
            r["seq"],
            detail,
            prev,
            digest,
        )
        prev = digest
    await conn.execute("RESET session_replication_role")


def migrant(stack: Stack, hukou: str, to: str, name: str, *, arrived: bool = True, sex: str = "F") -> str:
    """A woman (or a man, ``sex="M"``) registered at ``hukou`` who left for ``to`` in 2025 (and,
    when ``arrived``, was registered there on arrival): the identity number."""
    home = Api(stack, f"registry-{hukou}", f"reg-{hukou}")
    woman = person_id(sex)
    born = f"{woman[6:10]}-{woman[10:12]}-{woman[12:14]}"
    person = {"id_number": woman, "name": name, "sex": sex, "birth_date": born, "hukou_division": hukou}
    r = home.post("/v1/persons", person)
    assert r.status_code == 201, r.text
    move = {"id_number": woman, "from_division": hukou, "to_division": to, "migration_date": "2025-02-01"}
    r = home.post("/v1/migrations", {"kind": "departed", **move})
    assert r.status_code == 201, r.text
    if arrived:
        there = Api(stack, f"registry-{to}", f"reg-{to}")
        came = {"kind": "arrived", **move, "name": name, "hukou_division": hukou}
        r = there.post("/v1/migrations", came)
        assert r.status_code == 201, r.text
    return woman


def production_settings(**extra: str) -> dict[str, str]:
    """What every service's settings need in production (secrets as fakes of the right shape)."""
    return {
        "environment": "production",
        "trust_list_file": "x",
        "subject_key_secret": "s" * 32,
        "kafka_security_protocol": "SSL",
        "audit_checkpoint_key": "A" * 43,
        **extra,
    }


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when there is none)."""
    text = httpx.get(url + "/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def run_async(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def signed(stack: Stack, event: Any) -> bytes:
    """An envelope's bytes signed as its producer's relay signs them, with the key the stack's
    trust list names for the event's source (a test standing in for that producer)."""
    from shared.events.signature import source_party

    party = source_party(event.source)
    assert party is not None, event.source
    return signed_bytes(stack, party, event.model_dump_json().encode())


def signed_bytes(stack: Stack, party: str, value: bytes) -> bytes:
    """An event's bytes signed with ``party``'s event-signing key in the stack's trust material."""
    from shared.events.signature import sign_value

    signer = stack.trust.keyring(party).signing_key(party, dt.datetime.now(dt.UTC))
    assert signer is not None, f"the stack holds no signing key of {party}"
    return sign_value(value, *signer)


def notification(
    target: str, event_type: str, payload: dict[str, Any], source: str = "440703"
) -> Envelope[p.ExchangeNotificationV1]:
    """The exchange's notification to ``target`` of ``source``'s event, as a registry consumes it."""
    now = dt.datetime.now(dt.UTC)
    return Envelope[p.ExchangeNotificationV1](
        id=new_event_id(),
        source="/exchange",
        type="exchange.notification.v1",
        subject=uuid.uuid4().hex,
        time=now,
        dataschema="urn:x",
        sequence=1,
        data=p.ExchangeNotificationV1(
            notification_id=uuid.uuid4(),
            target_division=target,
            source_division=source,
            event_id=new_event_id(),
            event_type=event_type,
            event_sequence=1,
            event_time=now,
            deadline=now + dt.timedelta(days=7),
            payload=orjson.loads(orjson.dumps(payload)),
        ),
    )


@contextlib.asynccontextmanager
async def two_databases(
    pg: Any, service: str, migrations: Path
) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two empty, migrated databases of a service: the same input applied two ways, one into each."""
    made = []
    try:
        for _ in range(2):
            dsn = pg.create_database(f"{service}_{uuid.uuid4().hex[:12]}")
            await migrate(dsn, service, migrations)
            made.append(await create_pool(dsn, min_size=1, max_size=2))
        yield made[0], made[1]
    finally:
        for pool in made:
            await pool.close()


FEEDBACK_TYPES = ("exchange.feedback.v1", "exchange.feedback_batch.v1")


def answered(event: dict[str, Any]) -> set[str]:
    """The notifications a feedback event (as published JSON) answers: its own, or each of a batch's."""
    if event["type"] == "exchange.feedback.v1":
        return {event["data"]["notification_id"]}
    if event["type"] == "exchange.feedback_batch.v1":
        return {a["notification_id"] for a in event["data"]["answers"]}
    return set()


@contextlib.contextmanager
def in_process_registry(
    pg: Any, name: str, here: str, secret: str, readers: tuple[str, ...] = (), **settings: Any
) -> Iterator[tuple[Any, str]]:
    """A registry app of ``here`` on a fresh migrated database, served in-process (FastAPI's
    TestClient) to one jurisdiction client ``reg-<name>`` holding ``secret``, its clients given
    inline (CLIENTS_INLINE) as a demo gives them: the client, already authenticated, and the DSN.
    ``readers``: other jurisdictions, each with a client ``reg-<name>-<division>`` holding the
    same secret (send its ``Authorization`` header to read as that counterpart). Its background
    tasks do not run unless ``run_background=True`` is given."""
    import yaml
    from fastapi.testclient import TestClient

    from services.registry.entrypoints.app import create_app
    from services.registry.settings import RegistrySettings
    from shared.auth import DEFAULT_SCOPES, hash_secret

    dsn = pg.create_database(f"{name}_{uuid.uuid4().hex[:8]}")
    asyncio.run(migrate(dsn, "registry", Path("services/registry/migrations")))
    clients = [
        {
            "client_id": f"reg-{name}" + ("" if division == here else f"-{division}"),
            "kind": "jurisdiction",
            "jurisdiction": division,
            "scopes": DEFAULT_SCOPES["jurisdiction"],
            "secret_hash": hash_secret(secret),
        }
        for division in (here, *readers)
    ]
    app = create_app(
        RegistrySettings(
            database_url=dsn,
            jurisdictions=here,
            clients_inline=yaml.safe_dump(clients),
            **{"run_background": False, **settings},
        )
    )
    with TestClient(app, headers={"Authorization": f"Bearer reg-{name}.{secret}"}) as test_client:
        yield test_client, dsn


async def add_outbox_rows(dsn: str, n: int, topic: str) -> list[str]:
    """``n`` rows in a service's outbox on ``topic``, each an event with an id of its own, the relay
    woken: their event ids."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            """INSERT INTO outbox (event_id, event_type, topic, key, value)
               VALUES ($1::uuid, 'test.relayed.v1', $2, $3, $4)""",
            [(i, topic, f"k{k % 7}", orjson.dumps({"id": i})) for k, i in enumerate(ids)],
        )
        await conn.execute("NOTIFY outbox")
    finally:
        await conn.close()
    return ids


def kiosk_entry(client_id: str, token: str, **extra: Any) -> Any:
    """A clients-file entry of a kiosk of 440703 holding ``token``'s secret (``extra`` overrides)."""
    from shared.auth import hash_secret
    from shared.clients_file import ClientEntry

    return ClientEntry.model_validate(
        {
            "client_id": client_id,
            "kind": "kiosk",
            "jurisdiction": "440703",
            "secret_hash": hash_secret(token.split(".", 1)[1]),
        }
        | extra
    )
