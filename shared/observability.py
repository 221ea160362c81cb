"""Structured JSON logs with identity numbers redacted, and the Prometheus metrics every service exports."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import time
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import TypeVar

import orjson
from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import describe_fault
from shared.sensitivity import neutral_route

# 17 digits + check character: anything shaped like a resident identity number, also as written
# on forms and read out (grouped 6-8-4 by spaces or hyphens) and in full-width characters (which
# the registries' validation maps to ASCII and accepts: ``\d`` matches any decimal digit).
_ID_NUMBER = re.compile(r"(?<![\dA-Za-z])\d{6}[ -]?\d{8}[ -]?\d{3}[\dXxＸｘ](?![\dA-Za-z])")
_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def redact(text: str) -> str:
    """Replace anything shaped like an identity number. Defence in depth: code never logs them."""
    return _ID_NUMBER.sub("[id-number]", text)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def traceback_without_texts(exc: BaseException) -> str:
    """Where an error (and each error of its chain) came from, and what it was by class (and
    SQLSTATE), never what its text says: a database error's text quotes the failing row (names,
    dates of birth, identity numbers, a pregnancy record), a validation error's the value refused.
    """
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and all(cause is not seen for seen in chain):
        chain.append(cause)
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    parts = []
    for error in reversed(chain):
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(error.__traceback__))
        parts.append(" ".join(f"{k}={v}" for k, v in describe_fault(error).items()) + "\n")
    return "".join(parts).rstrip("\n")


class _NoErrorTexts(logging.Formatter):
    def formatException(self, ei: ExcInfo) -> str:
        return traceback_without_texts(ei[1]) if ei[1] is not None else ""


class JsonFormatter(_NoErrorTexts):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(doc, default=str).decode())


class RedactingTextFormatter(_NoErrorTexts):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class OncePerInterval(logging.Filter):
    """Let a repeated message of the named loggers through once per interval, with how many were
    held back (the service's own lines all pass).

    The Kafka client logs an error for every reconnection attempt, ten a second per client while
    the broker is down: thousands of identical lines per process in a five-second outage, which
    bury the few lines that say what the service did and cost the CPU it needs to recover."""

    def __init__(self, loggers: tuple[str, ...], interval: float = 10.0):
        super().__init__()
        self.loggers = loggers
        self.interval = interval
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.loggers):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        seen, held = self._last.get(key, (float("-inf"), 0))
        if now - seen < self.interval:
            self._last[key] = (seen, held + 1)
            return False
        if len(self._last) > 1000:  # messages with values baked in: keep the table small
            self._last.clear()
        self._last[key] = (now, 0)
        if held:
            record.repeated = held  # shown as a field of the JSON line
        return True


def configure_logging(service: str, level: str = "INFO", json_logs: bool = True) -> None:
    """Route every logger to stderr through the redacting formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service)
        if json_logs
        else RedactingTextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    noisy = ("aiokafka", "kafka")
    for name in noisy:
        logging.getLogger(name).setLevel(logging.ERROR)
    handler.addFilter(OncePerInterval(noisy))
    logging.getLogger("uvicorn.access").disabled = True


# --- metrics -------------------------------------------------------------------------------------

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)


@functools.lru_cache(maxsize=4096)
def labelled(metric: _Metric, *values: str) -> _Metric:
    """``metric.labels(*values)``, looked up once: ``labels`` validates and locks on every call,
    which a consumer counting each message pays per message. The label sets are few (services,
    consumers, neutral topic and type names), far below the cache's size."""
    return metric.labels(*values)


HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route",
    ["service", "method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENTS_PRODUCED = Counter(
    "events_produced_total", "Events published to Kafka by the outbox relay", ["service", "topic"]
)
EVENTS_CONSUMED = Counter(
    "events_consumed_total", "Kafka messages consumed", ["service", "consumer", "topic"]
)
EVENTS_APPLIED = Counter(
    "events_applied_total", "Events applied by a consumer, by type", ["service", "consumer", "type"]
)
INBOX_DUPLICATES = Counter(
    "inbox_duplicates_total", "Redelivered events skipped by the inbox", ["service", "consumer"]
)
DLQ_MESSAGES = Counter("dlq_messages_total", "Messages dead-lettered", ["service", "consumer", "topic"])
EVENTS_REJECTED = Counter(
    "events_rejected_total",
    "Events refused before any handler ran: unsigned, unknown or invalid signer, bad signature, "
    "or a sender without authority for what it says",
    ["service", "consumer", "reason"],
)
EVENTS_UNSIGNED_PUBLISHED = Counter(
    "events_published_unsigned_total",
    "Events the relay published without a signature: it holds no signing key for their source",
    ["service"],
)
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
OUTBOX_REFUSED = Counter(
    "outbox_refused_total",
    "Outbox rows the producer refused for good (too large, a refused topic), set aside unpublished",
    ["service", "reason"],
)
OUTBOX_REFUSED_ROWS = Gauge(
    "outbox_refused_rows", "Outbox rows set aside unpublished because the producer refused them", ["service"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures_total", "Failed publish attempts of the relay", ["service"]
)
BROKER_RESETS = Counter(
    "broker_resets_total", "Times the relay found the broker had lost its topics", ["service"]
)
CONSUMER_LAG = Gauge(
    "consumer_lag", "Messages behind the end of each topic", ["service", "consumer", "topic"]
)
CONSUMER_LAST_PROGRESS = Gauge(
    "consumer_last_progress_seconds",
    "Seconds since the consumer group was last seen applying anything or caught up (grows while "
    "records wait unread, or while the service cannot measure the group)",
    ["service", "consumer"],
)
CONSUMER_STALLED = Gauge(
    "consumer_stalled",
    "1 while the consumer group makes no progress with records unread",
    ["service", "consumer"],
)
CONSUMER_RESTARTS = Counter(
    "consumer_restarts_total",
    "Fresh consumers started after an error or a stall",
    ["service", "consumer", "reason"],
)
EVENT_LATENCY = Histogram(
    "event_apply_latency_seconds",
    "Time from an event's creation to its application by a consumer",
    ["service", "consumer"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

DUTY_ROUNDS = Counter(
    "background_duty_rounds_total",
    "Rounds of a service's periodic duties (the exchange's sweep, reconciliation and dashboard, "
    "retention, audit checkpoints and chaining, key refresh, clients read after a change), by outcome",
    ["service", "duty", "outcome"],
)
DUTY_ROUND_RUNNING = Gauge(
    "background_duty_round_running_seconds",
    "Seconds the duty's round in progress has been running, 0 between rounds (read at each "
    "scrape): a round that neither ends nor fails, waiting on something that never answers, "
    "counts no round at all",
    ["service", "duty"],
)


class Duty:
    """A periodic duty's rounds, counted by outcome (``background_duty_rounds_total``). A duty
    that keeps sweeping through errors logs each one and tries again next round; without this
    count nobody but the log would know that it never succeeds any more (alert
    ``BackgroundDutyFailing``). Both series exist from the start, so the first failure counts.

    A round that hangs (waiting for a pool connection that never frees, which no statement
    timeout bounds, or on any call that never returns) ends neither way and counts nothing: how
    long the round in progress has run is read at each scrape instead
    (``background_duty_round_running_seconds``, alert ``BackgroundDutyStuck``)."""

    def __init__(self, service: str, name: str):
        self._ok = DUTY_ROUNDS.labels(service, name, "ok")
        self._failed = DUTY_ROUNDS.labels(service, name, "failed")
        # Rounds in progress, by a number of their own: the clients' reads may overlap.
        self._started: dict[int, float] = {}
        self._next = 0
        DUTY_ROUND_RUNNING.labels(service, name).set_function(self.running_for)

    def running_for(self) -> float:
        """Seconds the oldest round in progress has run; 0 between rounds."""
        started = tuple(self._started.values())  # one step: a scrape may read from another thread
        return round(time.monotonic() - min(started), 1) if started else 0.0

    @contextlib.contextmanager
    def round(self) -> Iterator[None]:
        """One round: counted ok when it ends, failed when it raises (the error goes on)."""
        self._next += 1
        mine = self._next
        self._started[mine] = time.monotonic()
        try:
            yield
        except Exception:
            self._failed.inc()
            raise
        finally:
            del self._started[mine]
        self._ok.inc()


class MetricsMiddleware:
    """Pure ASGI middleware recording latency by route template (never by raw path: paths hold ids)."""

    def __init__(self, app: ASGIApp, service: str):
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = neutral_route(getattr(route, "path", "unmatched"))
            HTTP_LATENCY.labels(self.service, scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
