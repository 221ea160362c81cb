"""A cut and a slow link between the services and the broker, through a TCP proxy the test controls.

The broker advertises the proxy's address, so every Kafka connection (bootstrap and after)
goes through it. While the link is cut the registry keeps accepting events into its outbox
and ``/readyz`` says the broker is unreachable and how big the backlog is; once the link is
back the backlog drains and every event is applied exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.embedded import Broker, EmbeddedPostgres, free_port
from devstack.stack import ORIGIN, Stack
from tests.reliability.fault_tools import TcpProxy, emit_departures, migrants, wait_complete
from tests.stacks_ahead import finish

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxied(workdir: Path, pg: EmbeddedPostgres) -> Iterator[tuple[Stack, TcpProxy]]:
    s = Stack(workdir / "netfault", pg=pg, db_prefix="netfault_")
    (s.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    proxy_port = free_port()
    broker = Broker(log_path=s.run_dir / "logs" / "broker.log", advertised_port=proxy_port).start()
    proxy = TcpProxy(proxy_port, broker.port).start()
    s.broker, s.bootstrap = broker, broker.bootstrap
    try:
        s.plan()
        s.start_services()
        yield s, proxy
    finally:
        finish(s, "netfault")
        proxy.stop()


async def _ready(stack: Stack) -> dict[str, Any]:
    url = stack.service(f"registry-{ORIGIN}").url + "/readyz"
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(url)
    body: dict[str, Any] = r.json()
    body["http_status"] = r.status_code
    return body


async def test_cut_link_backlog_grows_then_drains(proxied: tuple[Stack, TcpProxy]) -> None:
    stack, proxy = proxied
    people = migrants(600)
    proxy.set_cut(True)
    try:
        first = await emit_departures(stack, people[:300])
        await asyncio.sleep(3)
        during = await _ready(stack)
        second = await emit_departures(stack, people[300:])
        await asyncio.sleep(1)
        later = await _ready(stack)
    finally:
        proxy.set_cut(False)
    print(f"\nlink cut: readyz during={during} later={later}")
    assert during["http_status"] == 503 and during["broker"].startswith("unavailable"), during
    assert during["outbox_backlog"] >= 300, during
    assert later["outbox_backlog"] >= 600 > during["outbox_backlog"], "the backlog did not grow"
    assert later["outbox_oldest_age_seconds"] > during["outbox_oldest_age_seconds"] > 0

    restored = time.monotonic()
    counts = await wait_complete(stack, people, first + second, timeout=90)
    print(f"link cut: {counts} drained in {time.monotonic() - restored:.1f}s")
    assert counts.complete(), counts
    assert counts.roster_moves == len(people) and counts.destination_repeated == 0 and counts.lost == 0

    deadline = time.monotonic() + 20
    while (after := await _ready(stack))["outbox_backlog"] or after["http_status"] != 200:
        assert time.monotonic() < deadline, f"/readyz never recovered: {after}"
        await asyncio.sleep(0.5)


async def test_slow_link_delivers_everything(proxied: tuple[Stack, TcpProxy]) -> None:
    stack, proxy = proxied
    people = migrants(500)
    proxy.delay = 0.05  # 50 ms on every chunk, both directions
    try:
        started = time.monotonic()
        ids = await emit_departures(stack, people, batch=50)
        counts = await wait_complete(stack, people, ids, timeout=90)
        elapsed = time.monotonic() - started
        ready = await _ready(stack)
    finally:
        proxy.delay = 0.0
    print(f"\nslow link: {counts} in {elapsed:.1f}s; readyz {ready}")
    assert counts.complete(), counts
    assert counts.roster_moves == len(people) and counts.destination_repeated == 0 and counts.lost == 0
    assert ready["broker"] == "ok"
