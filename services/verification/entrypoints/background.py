"""Every background task of verification: the key refresher (the audit writer's flush and chain
tasks are the audit writer's own, started and stopped with it in ``entrypoints/app.py``)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import httpx

from services.verification.adapters.keys import fetch_jwks
from services.verification.domain.keys import speaks_for
from services.verification.service_layer import publication
from services.verification.settings import VerificationSettings
from shared.db import unit_of_work
from shared.observability import Duty

log = logging.getLogger(__name__)


class KeyRefresher:
    """Fetches every registry's JWKS now and then, and soon (at most once a second, callers
    coalesced) when a token names a kid nobody published yet: a registry makes a key when it
    first issues or rotates. An unreachable registry keeps its known keys."""

    def __init__(self, pool: asyncpg.Pool, settings: VerificationSettings, min_gap: float = 1.0):
        self.pool = pool
        self.settings = settings
        self.min_gap = min_gap
        self._lock = asyncio.Lock()
        self._last = -min_gap
        self._http = httpx.AsyncClient()

    async def refresh(self, *, urgent: bool = False) -> None:
        loop = asyncio.get_running_loop()
        asked = loop.time()
        async with self._lock:
            if urgent and self._last >= asked:
                return  # a fetch started after this caller asked: it saw what there is to see
            wait = self._last + self.min_gap - loop.time()
            if urgent and wait > 0:
                await asyncio.sleep(wait)  # unknown kids cannot make us hammer the registries
            self._last = loop.time()
            for url, divisions in self.settings.key_sources.items():
                found = await fetch_jwks(self._http, url)
                if found is None:
                    continue
                # A jurisdiction's key document speaks only for the divisions it is bound to,
                # and only of kids they minted.
                if strays := [k for k in found if not speaks_for(k.kid, k.issuer, divisions)]:
                    log.warning("ignoring keys a document may not speak for", extra={"keys": len(strays)})
                found = [k for k in found if speaks_for(k.kid, k.issuer, divisions)]
                try:
                    async with unit_of_work(self.pool, wake=False) as conn:
                        await publication.learn_registry_keys(conn, url, found)
                except (OSError, asyncpg.PostgresError) as e:
                    log.warning("could not store registry keys", extra={"error": type(e).__name__})

    async def run(self) -> None:
        rounds = Duty(self.settings.service_name, "key-refresh")
        while True:
            try:
                with rounds.round():
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # an unforeseen error ends one round, not the refreshing
                log.warning("registry keys not refreshed", extra={"error": type(e).__name__})
            await asyncio.sleep(self.settings.key_refresh_seconds)

    async def close(self) -> None:
        await self._http.aclose()


def start(refresher: KeyRefresher | None) -> list[asyncio.Task[None]]:
    """Starts the tasks; the caller cancels them (``shared.shutdown.stop_tasks``)."""
    return [asyncio.create_task(refresher.run(), name="key-refresher")] if refresher else []
