"""PostgreSQL restarts under write load: services reconnect alone; every write lands exactly once.

A client writes persons with an ``Idempotency-Key`` and retries on 503 (or a dropped
connection) with the same key, as the problem+json tells it to. After the restart every
write is there once, with exactly one outbox event, and the exchange saw each event once.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from devstack.embedded import EmbeddedPostgres
from devstack.stack import ORIGIN, Stack
from shared.identity import subject_key
from tests.reliability.fault_tools import migrants
from tests.stacks_ahead import finish

pytestmark = pytest.mark.e2e

WRITES = 400
CONCURRENCY = 8


@pytest.fixture(scope="module")
def pg_stack(workdir: Path) -> Iterator[tuple[Stack, EmbeddedPostgres]]:
    own_pg = EmbeddedPostgres(workdir / "pg-restart" / "pgdata", cleanup="delete")
    s = Stack(workdir / "pg-restart", pg=own_pg, db_prefix="pgr_")
    try:
        s.start()
        yield s, own_pg
    finally:
        finish(s, "pg-restart")
        own_pg.stop()


async def _write_until_done(
    http: httpx.AsyncClient, n: str, seen: collections.Counter[str], done: list[str]
) -> None:
    body = {
        "id_number": n,
        "name": "王芳",
        "sex": "F",
        "birth_date": f"{n[6:10]}-{n[10:12]}-{n[12:14]}",
        "hukou_division": ORIGIN,
    }
    key = {"Idempotency-Key": str(uuid.uuid4())}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            r = await http.post("/v1/persons", json=body, headers=key)
        except httpx.TransportError as e:
            seen[type(e).__name__] += 1
            await asyncio.sleep(0.2)
            continue
        seen[str(r.status_code)] += 1
        if r.status_code == 201:
            done.append(n)
            return
        assert r.status_code == 503, f"not a retryable answer: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "Retry-After" in r.headers
        await asyncio.sleep(0.2)
    raise AssertionError("a write never succeeded after the restart")


async def test_postgres_restart_under_write_load(pg_stack: tuple[Stack, EmbeddedPostgres]) -> None:
    stack, own_pg = pg_stack
    registry = stack.service(f"registry-{ORIGIN}")
    people = migrants(WRITES)
    seen: collections.Counter[str] = collections.Counter()
    done: list[str] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for n in people:
        queue.put_nowait(n)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            await _write_until_done(http, queue.get_nowait(), seen, done)

    headers = {"Authorization": f"Bearer {stack.token(f'reg-{ORIGIN}')}"}
    async with httpx.AsyncClient(base_url=registry.url, headers=headers, timeout=30) as http:
        workers = [asyncio.create_task(worker(http)) for _ in range(CONCURRENCY)]
        while len(done) < WRITES // 4:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(own_pg.stop_server, "fast")  # every open connection dies
        written_before = len(done)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(own_pg.start_server)
        await asyncio.gather(*workers)

    print(f"\npostgres restart: {WRITES} writes, {written_before} before the stop, answers {dict(seen)}")
    assert written_before < WRITES
    assert sorted(done) == sorted(people)
    assert seen["503"] + sum(v for k, v in seen.items() if not k.isdigit()) > 0, "the outage was never seen"

    subjects = [subject_key(n, stack.subject_secret.encode()) for n in people]
    conn = await asyncpg.connect(registry.dsn)
    try:
        persons = await conn.fetchval("SELECT count(*) FROM persons WHERE id_number = ANY($1)", people)
        events = await conn.fetch(
            "SELECT key, count(*) AS n FROM outbox WHERE event_type = 'person.registered.v1' "
            "AND key = ANY($1) GROUP BY key",
            subjects,
        )
    finally:
        await conn.close()
    assert persons == WRITES
    assert len(events) == WRITES and all(r["n"] == 1 for r in events), "an event was half-applied or doubled"

    # The services reconnected by themselves: ready again, and the events flow to the exchange.
    for svc in stack.services:
        r = await asyncio.to_thread(httpx.get, svc.url + "/readyz", timeout=5)
        assert r.status_code == 200, (svc.name, r.text)
    exchange = await asyncpg.connect(stack.service("migrant_exchange").dsn)
    try:
        deadline = time.monotonic() + 60
        while (
            n := await exchange.fetchval("SELECT count(*) FROM roster WHERE subject = ANY($1)", subjects)
        ) < WRITES:
            assert time.monotonic() < deadline, f"only {n} of {WRITES} events reached the exchange"
            await asyncio.sleep(0.5)
    finally:
        await exchange.close()
    print(f"postgres restart: persons={persons} events={len(events)} at exchange={n} lost={WRITES - n}")
