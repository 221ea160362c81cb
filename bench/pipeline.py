"""Event pipeline: registry REST -> outbox -> broker -> exchange -> counterpart registry -> feedback.

Ceilings measured in the same run on the same broker and PostgreSQL: raw aiokafka produce+consume
and raw single-row PostgreSQL inserts. The pipeline events are arrivals recorded at the destination
(each a first record there), which the exchange routes to the origin; latency is the time from the
event's creation to the applied feedback, as the exchange records it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import KeepAliveHttp, RssSampler, summary, workdir, write_result
from devstack.embedded import EmbeddedPostgres
from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.identity import compose_id_number

_serial = itertools.count()


def _arrival(born: dt.date) -> dict[str, Any]:
    n = next(_serial)
    number = compose_id_number("110101", born + dt.timedelta(days=n // 500), n % 500, "F")
    return {
        "kind": "arrived",
        "id_number": number,
        "from_division": ORIGIN,
        "to_division": DESTINATION,
        "migration_date": "2025-01-01",
        "name": "测试",
        "hukou_division": ORIGIN,
    }


async def raw_kafka(bootstrap: str, n: int = 50_000) -> float:
    """Messages per second through produce (acks=all) and consume of 300-byte records."""
    topic = f"bench-raw-{uuid.uuid4().hex[:6]}"
    payload = b"x" * 300
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=2
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"g-{topic}",
    )
    await producer.start()
    await consumer.start()
    start = time.perf_counter()
    try:
        futures = [await producer.send(topic, payload, key=str(i % 64).encode()) for i in range(n)]
        await asyncio.gather(*futures)
        got = 0
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            got += sum(len(v) for v in batch.values())
        return n / (time.perf_counter() - start)
    finally:
        await producer.stop()
        await consumer.stop()


async def raw_inserts(dsn: str, n: int = 20_000, concurrency: int = 16) -> float:
    """Single-row inserts per second (an outbox-sized row, one transaction each)."""
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    await pool.execute("CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, k text, v bytea)")
    counter = itertools.count()

    async def worker() -> None:
        while next(counter) < n:
            await pool.execute("INSERT INTO bench_rows (k, v) VALUES ($1, $2)", "key", b"x" * 300)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = n / (time.perf_counter() - start)
    await pool.close()
    return rate


async def _drive(
    url: str, token: str, bodies: list[dict[str, Any]], rate: float | None, concurrency: int = 64
) -> tuple[float, int]:
    """POST the bodies (open loop at ``rate`` per second, or as fast as possible). Returns seconds, errors."""
    errors = 0
    statuses: dict[object, int] = {}
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    # one keep-alive connection per worker, as a pool of kiosks or registrar desks

    async def worker() -> None:
        nonlocal errors
        client = KeepAliveHttp(url, {"Authorization": f"Bearer {token}"})
        while (body := await queue.get()) is not None:
            try:
                status = await asyncio.wait_for(client.post("/v1/migrations", orjson.dumps(body)), 30)
                if status != 201:
                    errors += 1
                    statuses[status] = statuses.get(status, 0) + 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as e:
                errors += 1
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
        await client.close()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    start = time.perf_counter()
    for i, body in enumerate(bodies):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await queue.put(body)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    if statuses:
        print("request failures:", statuses, flush=True)
    return time.perf_counter() - start, errors


async def _wait_applied(
    exchange_dsn: str, since: dt.datetime, expected: dict[str, int], sampler: RssSampler, timeout: float = 300
) -> tuple[float, list[float]]:
    conn = await asyncpg.connect(exchange_dsn)
    deadline = time.perf_counter() + timeout
    try:
        while time.perf_counter() < deadline:
            sampler.sample()
            done = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE created_at >= $1 AND state = 'applied'", since
            )
            if done >= expected["n"]:
                break
            await asyncio.sleep(0.2)
        finished = time.perf_counter()
        rows = await conn.fetch(
            """SELECT extract(epoch FROM feedback_at - event_time) AS s FROM notifications
               WHERE created_at >= $1 AND state = 'applied'""",
            since,
        )
        return finished, [float(r["s"]) for r in rows]
    finally:
        await conn.close()


async def pipeline_run(stack: Stack, n: int, rate: float | None, sampler: RssSampler) -> dict[str, Any]:
    dest = stack.service(f"registry-{DESTINATION}").url
    token = stack.token(f"reg-{DESTINATION}")
    bodies = [_arrival(dt.date(1980, 1, 1)) for _ in range(n)]
    return {
        "offered_rate": rate,
        **await through_pipeline(stack, n, _drive(dest, token, bodies, rate), sampler),
    }


async def through_pipeline(
    stack: Stack, n: int, sending: Awaitable[tuple[float, int]], sampler: RssSampler
) -> dict[str, Any]:
    """Send ``n`` events with ``sending`` (seconds taken, events refused) and wait until the exchange
    has every accepted one applied at its counterpart: the rate and the latencies."""
    since = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    expected = {"n": n}
    applied = asyncio.create_task(
        _wait_applied(stack.service("migrant_exchange").dsn, since, expected, sampler)
    )
    send_seconds, errors = await sending
    expected["n"] = n - errors  # refused requests produce no event to wait for
    finished, latencies = await applied
    return {
        "events": n,
        "accepted_errors": errors,
        "send_seconds": send_seconds,
        "events_per_second": len(latencies) / (finished - start),
        "applied": len(latencies),
        "latency_s": summary(latencies),
    }


async def lone_events(stack: Stack, sampler: RssSampler, n: int = 20) -> dict[str, Any]:
    """Latency of a lone event on an idle system: ``n`` events sent one at a time, each once the
    previous one's feedback was applied (the first of them warms the path up and is not counted)."""
    latencies = []
    for i in range(n + 1):
        run = await pipeline_run(stack, 1, None, sampler)
        if i:
            latencies.append(run["latency_s"]["p50"])
        await asyncio.sleep(0.3)  # idle between them: no event in flight anywhere
    return {"events": n, "latency_s": summary(latencies)}


def main(n_max: int = 6000, n_steady: int = 3000) -> dict[str, Any]:
    root = workdir("mx-bench-")
    pg = EmbeddedPostgres(root / "pgdata", cleanup="delete")
    stack = Stack(root / "stack", pg=pg, db_prefix="bench_", extra_env={"LOG_LEVEL": "WARNING"})
    try:
        stack.start()
        assert stack.broker is not None
        result: dict[str, Any] = {
            "ceiling_kafka_msgs_per_s": asyncio.run(raw_kafka(stack.bootstrap)),
            "ceiling_pg_inserts_per_s": asyncio.run(raw_inserts(pg.create_database("bench_raw"))),
        }
        pids = {s.name: s.process.pid for s in stack.services if s.process}
        sampler = RssSampler(pids)
        result["lone_event"] = asyncio.run(lone_events(stack, sampler))
        result["max_throughput"] = asyncio.run(pipeline_run(stack, n_max, None, sampler))
        curve = []
        for rate in (100.0, 250.0, 350.0, 500.0):
            run = asyncio.run(pipeline_run(stack, int(min(n_steady, rate * 8)), rate, sampler))
            curve.append(
                {
                    "offered": rate,
                    "rate": run["events_per_second"],
                    "p50": run["latency_s"]["p50"],
                    "p99": run["latency_s"]["p99"],
                }
            )
            if rate == 500.0:
                result["at_500_per_s"] = run
        mx = result["max_throughput"]
        curve.append(
            {
                "offered": None,
                "rate": mx["events_per_second"],
                "p50": mx["latency_s"]["p50"],
                "p99": mx["latency_s"]["p99"],
            }
        )
        result["curve"] = curve
        result["peak_rss_mb"] = sampler.peak
        result["targets"] = {
            "events_per_second": 1000,  # one event per request (issue 18); batched: bench.batches
            "p99_latency_s_at_500": 1.0,
            "p50_latency_s_lone": 0.2,
            "rss_mb": 300,
        }
        return result
    finally:
        stack.stop()
        pg.stop()


if __name__ == "__main__":
    import json

    out = main()
    write_result("pipeline", out)
    print(json.dumps(out, indent=2, default=str))
