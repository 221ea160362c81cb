"""The exchange's digests request against a registry not upgraded yet.

A registry before the records set aside (``POST .../digests`` with ``left_out``) answers its
digests by ``GET`` alone; the exchange, upgraded first or last, must still reconcile with it. Here
a real HTTP server plays that registry: its one digests route is the ``GET``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException

from devstack.embedded import free_port
from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.settings import ExchangeSettings

A, B = "320412", "110101"
TOKEN = "service.secret"  # noqa: S105 (a test credential of this server's own)
asked: list[dict[str, Any]] = []


def _registry_before_set_aside() -> FastAPI:
    api = FastAPI()

    @api.get("/v1/internal/reconciliation/digests")
    def digests(
        jurisdiction: str, counterpart: str, buckets: int, authorization: str = Header()
    ) -> dict[str, Any]:
        if authorization != f"Bearer {TOKEN}":
            raise HTTPException(401)
        asked.append({"jurisdiction": jurisdiction, "counterpart": counterpart, "buckets": buckets})
        return {"jurisdiction": jurisdiction, "counterpart": counterpart, "buckets": [[7, 3, 12345]]}

    return api


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_registry_before_set_aside(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


async def _digests(url: str, left_out: list[tuple[str, str]]) -> dict[str, Any]:
    settings = ExchangeSettings(
        database_url="postgresql://unused", registry_urls=f"{A}={url}", registry_token=TOKEN
    )
    registries = RegistryClient(settings)
    try:
        return await registries.digests(A, B, 64, left_out)
    finally:
        await registries.close()


def test_records_set_aside_are_asked_of_an_older_registry_by_its_get(registry_url: str) -> None:
    asked.clear()
    doc = asyncio.run(_digests(registry_url, [("birth", "0190a1b2-0000-7000-8000-000000000001")]))
    assert doc["buckets"] == [[7, 3, 12345]]
    assert asked == [{"jurisdiction": A, "counterpart": B, "buckets": 64}]
