"""Spans and the consumer's trace line tell operators what the metrics tell them, nothing of a person.

With an exporter configured (``OTEL_EXPORTER=otlp|console``) every request and consumed event is
traced (``shared/tracing.py``), and spans leave the service unredacted: to the tracing backend, or
printed by the console exporter past the redacting log formatter. DESIGN.md sections 8 and 10:
operators see operations, not people. So a failure is told by its class and SQLSTATE, never its
text (an asyncpg error quotes PostgreSQL's DETAIL line: the failing row, a raw identity number
included), and a pregnancy route, topic or event type goes by the neutral name the metrics use.

The spans go to an in-memory exporter here instead of the network or stdout.
"""

from __future__ import annotations

import asyncio
import types
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from devstack.embedded import EmbeddedPostgres
from shared import tracing
from shared.consumer import EventConsumer
from shared.sensitivity import NEUTRAL_CATEGORY, NEUTRAL_ROUTE, NEUTRAL_TOPIC
from tests.helpers import in_process_registry, person_id

HERE = "320412"
SECRET = "tracing-privacy-secret"  # noqa: S105 - a throwaway credential of this test's own client


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """What ``OTEL_EXPORTER=otlp|console`` installs, exporting to memory (once per process: the
    global tracer provider cannot be replaced)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracing._state.update(configured=True, exporting=True)
    yield exporter
    tracing._state.update(exporting=False)


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres, spans: InMemorySpanExporter) -> Iterator[TestClient]:
    with in_process_registry(pg, "trace", HERE, SECRET) as (client, _):
        yield client


@pytest.fixture
def row_error(fresh_db: str) -> tuple[str, asyncpg.PostgresError]:
    """A real CHECK violation whose text quotes the failing row, and the identity number in it."""
    mother = person_id("F")

    async def violate() -> asyncpg.PostgresError:
        conn = await asyncpg.connect(fresh_db)
        try:
            await conn.execute(
                "CREATE TEMP TABLE pregnancies (mother_id_number text, registered_on date,"
                " closed_on date CHECK (closed_on >= registered_on))"
            )
            await conn.execute("INSERT INTO pregnancies VALUES ($1, '2026-04-01', '2026-03-01')", mother)
        except asyncpg.CheckViolationError as e:
            return e
        finally:
            await conn.close()
        raise AssertionError("the CHECK let the row in")

    error = asyncio.run(violate())
    assert mother in str(error)  # what OpenTelemetry records of an exception by default
    return mother, error


def assert_told_by_class_and_sqlstate(span: ReadableSpan, id_number: str) -> None:
    assert id_number not in span.to_json(), "the span holds the raw identity number"
    assert not span.events, "an exception event carries the error's text"
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "CheckViolationError"
    assert attributes["db.response.status_code"] == "23514"  # check_violation


def test_a_failed_request_span_tells_the_error_by_class_and_sqlstate(
    spans: InMemorySpanExporter, row_error: tuple[str, asyncpg.PostgresError]
) -> None:
    mother, error = row_error
    app = FastAPI(**tracing.native_telemetry_off())  # as every service makes its app

    @app.post("/v1/corrections")
    async def correct() -> None:
        raise error

    app.add_middleware(tracing.TracingMiddleware)
    spans.clear()
    # raise_server_exceptions=False: the error escapes every middleware, as under uvicorn
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/v1/corrections").status_code == 500
    (server,) = spans.get_finished_spans()
    assert server.name == "POST /v1/corrections"
    assert_told_by_class_and_sqlstate(server, mother)


def test_a_failed_event_span_tells_the_error_by_class_and_sqlstate(
    spans: InMemorySpanExporter, row_error: tuple[str, asyncpg.PostgresError]
) -> None:
    mother, error = row_error
    spans.clear()
    with (
        pytest.raises(asyncpg.CheckViolationError),
        tracing.consumer_span("c", "person.registered.v1", "t", None),
    ):
        raise error
    (consumer,) = spans.get_finished_spans()
    assert_told_by_class_and_sqlstate(consumer, mother)


def test_spans_name_a_pregnancy_route_topic_and_type_as_the_metrics_do(
    spans: InMemorySpanExporter, registry: TestClient
) -> None:
    spans.clear()
    with tracing.consumer_span("c", "pregnancy.registered.v1", "vital.pregnancy.v1", None):
        pass
    r = registry.post(
        "/v1/pregnancies", json={"mother_id_number": person_id("F"), "registered_on": "2026-02-01"}
    )
    assert r.status_code == 422, r.text  # no such mother: the route is matched all the same
    consumer, server = spans.get_finished_spans()
    assert consumer.name == f"apply {NEUTRAL_CATEGORY}"
    assert dict(consumer.attributes or {})["messaging.destination.name"] == NEUTRAL_TOPIC
    assert server.name == f"POST {NEUTRAL_ROUTE}"
    assert dict(server.attributes or {})["http.route"] == NEUTRAL_ROUTE
    assert not [s.name for s in (consumer, server) if "pregnan" in s.to_json()]


def test_the_applied_log_line_names_a_pregnancy_event_by_its_category(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The line carries the event id, and every listing an operator reads shows that event only by
    its category: the real type beside the id would undo that event by event."""
    event = types.SimpleNamespace(type="pregnancy.registered.v1", id=uuid.uuid4())
    consumer = types.SimpleNamespace(name="migrant-exchange-events")
    with caplog.at_level("INFO", logger="shared.consumer"):
        EventConsumer._log_applied(consumer, event, "ab" * 16)  # type: ignore[arg-type]
    (line,) = [r for r in caplog.records if r.getMessage() == "event applied"]
    assert (line.type, line.event_id) == (NEUTRAL_CATEGORY, str(event.id))  # type: ignore[attr-defined]
