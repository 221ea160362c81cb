"""The operations centre's live picture: one sampler per process builds it every
``DASHBOARD_INTERVAL`` and fans it out to every open stream, so ten wall screens cost what one
does; the costlier sections (flows, indicators, every group's lag) only while someone watches."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from prometheus_client import Gauge
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.samples import Sample

from services.migrant_exchange.adapters.group_lag import GroupLag
from services.migrant_exchange.service_layer import indicators as ind
from services.migrant_exchange.settings import ExchangeSettings
from shared.identity import division_name
from shared.observability import CONSUMER_LAG, EVENTS_APPLIED, OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, Duty

log = logging.getLogger(__name__)
# A JSON object as the stream sends it (the picture's sections are the indicators' documents).
Document = dict[str, Any]

NOTIFICATIONS_OPEN = Gauge(
    "exchange_notifications_open", "Notifications awaiting feedback, by state", ["service", "state"]
)
OLDEST_OPEN = Gauge(
    "exchange_oldest_open_notification_seconds",
    "Age of the oldest notification awaiting feedback",
    ["service"],
)
DEAD_LETTERS_OPEN = Gauge("exchange_dead_letters_open", "Dead letters not yet replayed", ["service"])


# --- what this process's own metrics say ---------------------------------------------------------


def _samples(metric: MetricWrapperBase, service: str) -> list[Sample]:
    return [
        s
        for family in metric.collect()
        for s in family.samples
        if s.labels.get("service") == service and not s.name.endswith("_created")
    ]


class LiveFeed:
    """Samples the operations picture and fans each snapshot out to every open stream."""

    def __init__(self, pool: asyncpg.Pool, settings: ExchangeSettings, group_lag: GroupLag):
        self.pool = pool
        self.service = settings.service_name
        self.settings = settings
        self.thresholds = thresholds(settings)
        self.group_lag = group_lag
        self._broker_lag: tuple[float, list[Document]] | None = None
        # The trends' basis (the previous period) moves slowly: recomputed once a minute.
        self._previous: tuple[float, dict[str, Document]] | None = None
        self.latest: Document = {}
        self.versions = {"flows": 0, "indicators": 0}
        self._sections: dict[str, Document | None] = {"flows": None, "indicators": None}
        self._history: deque[tuple[float, dict[str, float]]] = deque(maxlen=6)
        self._subscribers: set[asyncio.Queue[Document]] = set()
        self._tick = 0

    async def run(self) -> None:
        rounds = Duty(self.settings.service_name, "dashboard")
        while True:
            try:
                with rounds.round():
                    await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a database blip must not end the feed
                log.warning("dashboard sample failed", extra={"error": type(e).__name__})
            await asyncio.sleep(self.settings.dashboard_interval)

    async def run_group_lag(self) -> None:
        """Every group's lag from the broker, while someone watches (it costs broker round trips)."""
        while True:
            if self._subscribers:
                try:
                    rows = await asyncio.wait_for(
                        self.group_lag.sample(), self.settings.dashboard_group_lag_interval
                    )
                    self._broker_lag = (time.monotonic(), rows)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the broker is down or too old: fall back to our own gauges
                    log.info("group lag unavailable", extra={"error": type(e).__name__})
                    await self.group_lag.close()
            await asyncio.sleep(self.settings.dashboard_group_lag_interval)

    def _lag(self) -> tuple[str, list[Document]]:
        if (
            self._broker_lag
            and time.monotonic() - self._broker_lag[0] < 6 * self.settings.dashboard_group_lag_interval
        ):
            # Topic names as the metrics carry them: a pregnancy topic's lag under the neutral name.
            return "broker", ind.neutral_lag(self._broker_lag[1])
        return "process", [
            {"group": s.labels["consumer"], "topic": s.labels["topic"], "lag": int(s.value)}
            for s in _samples(CONSUMER_LAG, self.service)
        ]

    async def sample(self, force: bool = False) -> Document:
        """One picture; the costlier sections only while someone watches (or when ``force``d)."""
        watching = bool(self._subscribers)
        async with self.pool.acquire() as conn:
            ops = await ind.operations_picture(conn)
            if force or (watching and self._tick % self.settings.dashboard_flows_every == 0):
                self._set("flows", _compact(await ind.compute_flows(conn)))
            if force or (watching and self._tick % self.settings.dashboard_indicators_every == 0):
                period = ind.Period.ending(None, dt.timedelta(hours=self.settings.dashboard_period_hours))
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
        snapshot["alerts"] = ind.alerts(snapshot, self.thresholds)
        del snapshot["indicators"]  # sent as its own versioned section
        self.latest = snapshot
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()  # a slow screen gets the newest picture, not a backlog
            queue.put_nowait(snapshot)
        return snapshot

    def _set(self, section: str, value: Document) -> None:
        if value != self._sections[section]:
            self._sections[section] = value
            self.versions[section] += 1

    def _rates(self) -> Document:
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

    def _export(self, ops: Document) -> None:
        n = ops["notifications"]
        NOTIFICATIONS_OPEN.labels(self.service, "pending").set(n["pending"])
        NOTIFICATIONS_OPEN.labels(self.service, "overdue").set(n["overdue"])
        OLDEST_OPEN.labels(self.service).set(n["oldest_open_seconds"])
        DEAD_LETTERS_OPEN.labels(self.service).set(ops["dead_letters"]["open"])

    async def messages(self, disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
        """Server-sent events for one screen: every snapshot, plus sections when they changed."""
        queue: asyncio.Queue[Document] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        sent = {"flows": -1, "indicators": -1}
        try:
            yield b"retry: 2000\n\n"
            if not self.latest or self._sections["flows"] is None:
                await self.sample(force=True)  # the first screen gets a full picture at once
            pending: Document | None = self.latest
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
                if await disconnected():
                    return
        finally:
            self._subscribers.discard(queue)


def _compact(flows: Document) -> Document:
    """The matrix as [origin index, destination index, count] triples: a quarter of the bytes;
    with each division's place name (GB/T 2260, python-stdnum), so a wall reads names."""
    index = {d: i for i, d in enumerate(flows["divisions"])}
    cells = [[index[c["origin"]], index[c["destination"]], c["count"]] for c in flows["flows"]]
    names = [division_name(d) or d for d in flows["divisions"]]
    return {"divisions": flows["divisions"], "names": names, "cells": cells, "total": flows["total"]}


def thresholds(settings: ExchangeSettings) -> ind.Thresholds:
    """The early-warning thresholds, from the ``DASHBOARD_*`` settings of the same names."""
    return ind.Thresholds(**{f: getattr(settings, f"dashboard_{f}") for f in ind.Thresholds.model_fields})
