"""The operations centre: indicators, flows, a live stream and the wall-screen page.

``GET /v1/indicators`` and ``GET /v1/flows`` answer operators (scope ``ops:read``) with aggregates
only. ``GET /v1/stream`` sends server-sent events: one sampler per process builds the picture every
second and fans it out, so ten wall screens cost what one does. ``GET /dashboard`` is the page; it
holds no data and no credential, the operator's token stays in the browser.

The router brings its own lifespan (merged into the app's by ``include_router``): it starts the
sampler, after the app has its pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from prometheus_client import Gauge
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.migrant_exchange.adapters import dead_letters as census
from services.migrant_exchange.adapters import stats
from services.migrant_exchange.adapters.group_lag import GroupLag
from services.migrant_exchange.service_layer import indicators as ind
from shared.app import Pool
from shared.auth import Client, require
from shared.errors import InvalidInput, NotFound
from shared.identity import DivisionCode, division_name
from shared.inputs import RowId
from shared.observability import CONSUMER_LAG, EVENTS_APPLIED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE
from shared.openapi import problems

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
OpsReader = Annotated[Client, require("ops:read")]

NOTIFICATIONS_OPEN = Gauge(
    "exchange_notifications_open", "Notifications awaiting feedback, by state", ["service", "state"]
)
OLDEST_OPEN = Gauge(
    "exchange_oldest_open_notification_seconds",
    "Age of the oldest notification awaiting feedback",
    ["service"],
)
DEAD_LETTERS_OPEN = Gauge("exchange_dead_letters_open", "Dead letters not yet replayed", ["service"])


class DashboardSettings(BaseSettings, ind.Thresholds):
    """``DASHBOARD_*`` environment variables: sampling pace and the early-warning thresholds.

    The thresholds (``DASHBOARD_CONSUMER_LAG`` and the others) are the fields of ``ind.Thresholds``.
    """

    model_config = SettingsConfigDict(env_prefix="DASHBOARD_", extra="ignore")

    interval: float = 1.0
    flows_every: int = 2  # ticks between flow-matrix refreshes
    indicators_every: int = 5
    period_hours: float = 24.0
    group_lag_interval: float = 5.0  # seconds between reads of every group's offsets from the broker


# --- what this process's own metrics say ---------------------------------------------------------


def _samples(metric: Any, service: str) -> list[Any]:
    return [
        s
        for family in metric.collect()
        for s in family.samples
        if s.labels.get("service") == service and not s.name.endswith("_created")
    ]


class LiveFeed:
    """Samples the operations picture and fans each snapshot out to every open stream."""

    def __init__(self, pool: asyncpg.Pool, service: str, cfg: DashboardSettings, group_lag: GroupLag):
        self.pool = pool
        self.service = service
        self.cfg = cfg
        self.group_lag = group_lag
        self._broker_lag: tuple[float, list[dict[str, Any]]] | None = None
        # The trends' basis (the previous period) moves slowly: recomputed once a minute.
        self._previous: tuple[float, dict[str, dict[str, Any]]] | None = None
        self.latest: dict[str, Any] = {}
        self.versions = {"flows": 0, "indicators": 0}
        self._sections: dict[str, Any] = {"flows": None, "indicators": None}
        self._history: deque[tuple[float, dict[str, float]]] = deque(maxlen=6)
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._tick = 0

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a database blip must not end the feed
                log.warning("dashboard sample failed", extra={"error": type(e).__name__})
            await asyncio.sleep(self.cfg.interval)

    async def run_group_lag(self) -> None:
        """Every group's lag from the broker, while someone watches (it costs broker round trips)."""
        while True:
            if self._subscribers:
                try:
                    rows = await asyncio.wait_for(self.group_lag.sample(), self.cfg.group_lag_interval)
                    self._broker_lag = (time.monotonic(), rows)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the broker is down or too old: fall back to our own gauges
                    log.info("group lag unavailable", extra={"error": type(e).__name__})
                    await self.group_lag.close()
            await asyncio.sleep(self.cfg.group_lag_interval)

    def _lag(self) -> tuple[str, list[dict[str, Any]]]:
        if self._broker_lag and time.monotonic() - self._broker_lag[0] < 6 * self.cfg.group_lag_interval:
            # Topic names as the metrics carry them: a pregnancy topic's lag under the neutral name.
            return "broker", ind.neutral_lag(self._broker_lag[1])
        return "process", [
            {"group": s.labels["consumer"], "topic": s.labels["topic"], "lag": int(s.value)}
            for s in _samples(CONSUMER_LAG, self.service)
        ]

    async def sample(self, force: bool = False) -> dict[str, Any]:
        """One picture; the costlier sections only while someone watches (or when ``force``d)."""
        watching = bool(self._subscribers)
        async with self.pool.acquire() as conn:
            ops = await ind.operations_picture(conn)
            if force or (watching and self._tick % self.cfg.flows_every == 0):
                self._set("flows", _compact(await ind.compute_flows(conn)))
            if force or (watching and self._tick % self.cfg.indicators_every == 0):
                period = ind.Period.ending(None, dt.timedelta(hours=self.cfg.period_hours))
                if self._previous is None or time.monotonic() - self._previous[0] > 60:
                    self._previous = (time.monotonic(), await ind.period_values(conn, period.previous()))
                self._set(
                    "indicators", await ind.compute_indicators(conn, period, previous=self._previous[1])
                )
        self._tick += 1
        self._export(ops)
        lag_source, lag = self._lag()
        snapshot = {
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "rates": self._rates(),
            "lag_source": lag_source,
            "lag": lag,
            "outbox": {
                "backlog": int(sum(s.value for s in _samples(OUTBOX_BACKLOG, self.service))),
                "oldest_age_seconds": round(
                    max([s.value for s in _samples(OUTBOX_OLDEST_AGE, self.service)] or [0]), 1
                ),
            },
            "operations": ops,
            "indicators": self._sections["indicators"],
        }
        snapshot["alerts"] = ind.alerts(snapshot, self.cfg)
        del snapshot["indicators"]  # sent as its own versioned section
        self.latest = snapshot
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()  # a slow screen gets the newest picture, not a backlog
            queue.put_nowait(snapshot)
        return snapshot

    def _set(self, section: str, value: Any) -> None:
        if value != self._sections[section]:
            self._sections[section] = value
            self.versions[section] += 1

    def _rates(self) -> dict[str, Any]:
        """Events applied per second by type over the last few seconds (this process's counters)."""
        # Per type and consumer first: an event two consumers apply (certificates) counts once.
        per_consumer: dict[tuple[str, str], float] = {}
        for s in _samples(EVENTS_APPLIED, self.service):
            if s.name.endswith("_total"):
                key = (ind.shown_type(s.labels["type"]), s.labels["consumer"])
                per_consumer[key] = per_consumer.get(key, 0.0) + s.value
        totals: dict[str, float] = {}
        for (shown, _), value in per_consumer.items():
            totals[shown] = max(totals.get(shown, 0.0), value)
        now = time.monotonic()
        self._history.append((now, totals))
        then, before = self._history[0]
        span = max(now - then, 1e-9)
        by_type = {
            t: round((v - before.get(t, 0.0)) / span, 2) if len(self._history) > 1 else 0.0
            for t, v in sorted(totals.items())
        }
        return {
            "by_type": by_type,
            "total": round(sum(by_type.values()), 2),
            "applied": int(sum(totals.values())),
        }

    def _export(self, ops: dict[str, Any]) -> None:
        n = ops["notifications"]
        NOTIFICATIONS_OPEN.labels(self.service, "pending").set(n["pending"])
        NOTIFICATIONS_OPEN.labels(self.service, "overdue").set(n["overdue"])
        OLDEST_OPEN.labels(self.service).set(n["oldest_open_seconds"])
        DEAD_LETTERS_OPEN.labels(self.service).set(ops["dead_letters"]["open"])

    async def messages(self, request: Request) -> AsyncIterator[bytes]:
        """Server-sent events for one screen: every snapshot, plus sections when they changed."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        sent = {"flows": -1, "indicators": -1}
        try:
            yield b"retry: 2000\n\n"
            if not self.latest or self._sections["flows"] is None:
                await self.sample(force=True)  # the first screen gets a full picture at once
            pending: dict[str, Any] | None = self.latest
            while True:
                if pending is not None:
                    message = dict(pending)
                    for section, version in self.versions.items():
                        if sent[section] != version and self._sections[section] is not None:
                            message[section] = self._sections[section]
                            sent[section] = version
                    yield b"event: snapshot\ndata: " + orjson.dumps(message) + b"\n\n"
                try:
                    pending = await asyncio.wait_for(queue.get(), timeout=15.0)
                except TimeoutError:
                    pending = None
                    yield b": keep-alive\n\n"
                if await request.is_disconnected():
                    return
        finally:
            self._subscribers.discard(queue)


def _compact(flows: dict[str, Any]) -> dict[str, Any]:
    """The matrix as [origin index, destination index, count] triples: a quarter of the bytes;
    with each division's place name (GB/T 2260, python-stdnum), so a wall reads names."""
    index = {d: i for i, d in enumerate(flows["divisions"])}
    cells = [[index[c["origin"]], index[c["destination"]], c["count"]] for c in flows["flows"]]
    names = [division_name(d) or d for d in flows["divisions"]]
    return {"divisions": flows["divisions"], "names": names, "cells": cells, "total": flows["total"]}


def _json(doc: Any) -> Response:
    """orjson straight to bytes: FastAPI's encoder is slow on thousands of matrix cells."""
    return Response(orjson.dumps(doc), media_type="application/json")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    group_lag = GroupLag(settings, stall_seconds=settings.consumer_stall_seconds)
    feed = LiveFeed(app.state.pool, settings.service_name, DashboardSettings(), group_lag)
    app.state.live_feed = feed
    tasks = [
        asyncio.create_task(feed.run(), name="dashboard-feed"),
        asyncio.create_task(feed.run_group_lag(), name="dashboard-group-lag"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await group_lag.close()


router = APIRouter(tags=["operations centre"], lifespan=lifespan)


@router.get("/v1/indicators", summary="Indicators per jurisdiction and period")
async def get_indicators(
    pool: Pool,
    client: OpsReader,
    jurisdiction: DivisionCode | None = None,
    start: Annotated[
        dt.datetime | None, Query(alias="from", description="period start (default: end - 24 h)")
    ] = None,
    end: Annotated[dt.datetime | None, Query(alias="to", description="period end (default: now)")] = None,
) -> Response:
    """Migrants in and out, issuance, verification, timely feedback, feedback times, discrepancies and
    reconciliation accuracy, with each rate's change from the previous period of the same length."""
    end = _aware(end) or dt.datetime.now(dt.UTC)
    start = _aware(start) or end - dt.timedelta(hours=24)
    if start >= end:
        raise InvalidInput("the period must start before it ends", field="from", rule="before-to")
    if end - start > dt.timedelta(days=366):
        raise InvalidInput("a period is at most 366 days", field="from", rule="max-366-days")
    async with pool.acquire() as conn:
        return _json(await ind.compute_indicators(conn, ind.Period(start, end), jurisdiction))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


@router.get("/v1/flows", summary="Migrants by origin × destination")
async def get_flows(
    pool: Pool,
    client: OpsReader,
    format: Annotated[
        str, Query(pattern="^(sparse|matrix)$", description="matrix adds dense rows")
    ] = "sparse",
) -> Response:
    """How many people registered in each origin live in each destination (aggregates only)."""
    async with pool.acquire() as conn:
        return _json(await ind.compute_flows(conn, dense=format == "matrix"))


@router.get("/v1/dead-letters", summary="Dead letters of every service (where, when, why)")
async def list_dead_letters(
    pool: Pool, client: OpsReader, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    """``counts``: every service's dead letters by service, topic and reason (read from the
    ``<topic>.dlq`` topics); ``dead_letters``: the exchange's own, newest first, without message
    bodies or keys (every service's letters are listed and replayed with ``exchangectl dlq``)."""
    async with pool.acquire() as conn:
        counts = await census.counts(conn)
        own = [ind.neutral_dead_letter(r) for r in await stats.dead_letters(conn, limit)]
    return _json({"total": sum(int(c["count"]) for c in counts), "counts": counts, "dead_letters": own})


@router.get("/v1/dead-letters/{dead_letter_id}", summary="One dead letter", responses=problems(404))
async def get_dead_letter(dead_letter_id: RowId, pool: Pool, client: OpsReader) -> Response:
    """Where one dead letter came from and why it could not be applied."""
    async with pool.acquire() as conn:
        rows = await stats.dead_letters(conn, 1, dead_letter_id)
    if not rows:
        raise NotFound("no dead letter with this id", field="dead_letter_id", rule="exists")
    return _json(ind.neutral_dead_letter(rows[0]))


@router.get("/v1/stream", summary="Live operations picture (server-sent events)")
async def stream(request: Request, client: OpsReader) -> StreamingResponse:
    """``snapshot`` events once a second: rates, lag, notifications, dead letters, alerts; the flow
    matrix and the indicators ride along whenever they changed."""
    return StreamingResponse(
        request.app.state.live_feed.messages(request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    """The wall-screen page (it carries no data; the stream does)."""
    return FileResponse(
        STATIC / "dashboard.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


@router.get("/dashboard/assets/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound("no such asset", field="name", rule="known-asset")
    return FileResponse(STATIC / name, media_type=ASSETS[name])


routers = [router]
