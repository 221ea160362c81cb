"""W3C trace context from a REST request through the outbox and Kafka headers to the consumer's span.

OpenTelemetry SDK with the exporter chosen by ``OTEL_EXPORTER``: ``none`` (the default), ``console``
or ``otlp`` (to ``OTEL_ENDPOINT``). With an exporter, every request gets a SERVER span named by its
route template (FastAPI's native spans are switched off: they carry the raw path, which may hold an
identity number), each outbox row carries the span that wrote it, and each consumer opens a
CONSUMER span that continues the Kafka header's context.

Spans are read by operators, so they say what the metrics say and no more (DESIGN.md section 10):
a sensitive route, topic or event type under its neutral name (``shared.sensitivity``), and a
failure as its class and SQLSTATE, never its text.

Off by default, no span is made, yet a ``traceparent`` a caller sends is still honoured: the
services pass it on unchanged through the outbox rows and Kafka headers, and the consumer that
applies the event writes its trace id in its log line. One trace id can be followed across the
services either way.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import describe_fault
from shared.sensitivity import neutral_route, neutral_topic, neutral_type

log = logging.getLogger(__name__)

TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_PROPAGATOR = TraceContextTextMapPropagator()
_state = {"configured": False, "exporting": False}


def configure_tracing(service: str, exporter: str = "none", endpoint: str | None = None) -> None:
    """Install the SDK tracer provider once per process, with the configured exporter (or none)."""
    if _state["configured"] or exporter == "none":
        return  # no SDK provider: the API's no-op tracer, and FastAPI's native telemetry stays idle
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    _state.update(configured=True, exporting=True)


def tracing_enabled() -> bool:
    """True when spans are exported: then every request and consumed event is traced, not only
    those whose caller sent a ``traceparent``."""
    return _state["exporting"]


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a W3C ``traceparent``, or None if there is none or it is malformed."""
    m = TRACEPARENT.match(traceparent or "")
    return m.group(1) if m else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, to carry in an outbox row; None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


# describe_fault's fields under their OpenTelemetry semantic-convention names.
_FAULT_ATTRIBUTES = {"error": "error.type", "sqlstate": "db.response.status_code"}


def _tracer() -> trace.Tracer:
    return trace.get_tracer("migrant_exchange")


@contextmanager
def _span(name: str, **options: Any) -> Iterator[trace.Span]:
    """A current span that describes a failure by its class and SQLSTATE only.

    OpenTelemetry records an exception's text by default, and a database error's text quotes the
    failing row (an identity number, a pregnancy record): it would reach the exporter unredacted.
    """
    with _tracer().start_as_current_span(
        name, record_exception=False, set_status_on_exception=False, **options
    ) as span:
        try:
            yield span
        except Exception as e:
            span.set_status(StatusCode.ERROR)
            span.set_attributes({_FAULT_ATTRIBUTES[k]: v for k, v in describe_fault(e).items()})
            raise


@contextmanager
def consumer_span(consumer: str, event_type: str, topic: str, parent: str | None) -> Iterator[str | None]:
    """A CONSUMER span continuing ``parent`` (Kafka header or CloudEvent extension), naming the
    event type and topic as the metrics do (a sensitive one by its neutral name).

    Yields the trace id to log. Without an exporter no span is made and the event's own trace id
    (None if it has none) is yielded, which keeps the untraced hot path free of span work.
    """
    if not tracing_enabled():
        yield trace_id_of(parent)  # no spans; the caller's trace id is still logged
        return
    ctx = _PROPAGATOR.extract({"traceparent": parent}) if parent else None
    with _span(
        f"apply {neutral_type(event_type)}",
        context=ctx,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": neutral_topic(topic),
            "consumer": consumer,
        },
    ) as span:
        span_ctx = span.get_span_context()
        yield f"{span_ctx.trace_id:032x}" if span_ctx.is_valid else trace_id_of(parent)


def native_telemetry_off() -> dict[str, Any]:
    """FastAPI keyword arguments that switch off its own OpenTelemetry spans, where it has them.

    Its spans carry the raw URL path, and paths here hold identity numbers
    (``/v1/persons/{id_number}``); ours are named by route template only.
    """
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


class TracingMiddleware:
    """Pure ASGI middleware: a SERVER span per request, continuing the caller's ``traceparent``,
    when an exporter is configured (and no outer layer opened a span already).

    The span is named by route template, never by raw path (paths hold identity numbers), and a
    sensitive template by its neutral name, as in the metrics.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not tracing_enabled()
            or trace.get_current_span().get_span_context().is_valid
        ):
            await self.app(scope, receive, send)
            return
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", ())
            if k in (b"traceparent", b"tracestate")
        }
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with _span(scope["method"], context=_PROPAGATOR.extract(carrier), kind=SpanKind.SERVER) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                route = neutral_route(getattr(scope.get("route"), "path", "unmatched"))
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.request.method", scope["method"])
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
