"""Observability of the running services: one trace id from a registry POST to the consumers,
and health, readiness and Prometheus metrics on every service."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import Api, person_id, query, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture

pytestmark = pytest.mark.e2e


def _applied_lines(stack: Stack, service: str, trace_id: str) -> list[dict[str, Any]]:
    path: Path = stack.run_dir / "logs" / f"{service}.log"
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if trace_id in raw:
            doc = json.loads(raw)
            if doc.get("msg") == "event applied" and doc.get("trace_id") == trace_id:
                lines.append(doc)
    return lines


def _post_migrant(stack: Stack, traceparent: str) -> str:
    who = person_id("M")
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    r = origin.post(
        "/v1/persons",
        {
            "id_number": who,
            "name": "刘洋",
            "sex": "M",
            "birth_date": f"{who[6:10]}-{who[10:12]}-{who[12:14]}",
            "hukou_division": ORIGIN,
            "residence_division": DESTINATION,  # a migrant: the exchange notifies the destination
        },
        traceparent=traceparent,
    )
    assert r.status_code == 201, r.text
    return who


def test_trace_id_of_a_registry_post_is_found_on_the_consumer_side(stack: Stack) -> None:
    trace_id = secrets.token_hex(16)
    who = _post_migrant(stack, f"00-{trace_id}-{secrets.token_hex(8)}-01")

    # The exchange applied the registry's event in a span of the caller's trace ...
    exchange = wait_until(lambda: _applied_lines(stack, "migrant_exchange", trace_id), timeout=10)
    assert {line["type"] for line in exchange} >= {"person.registered.v1"}
    # ... and the destination registry applied the exchange's notification in the same trace.
    dest = wait_until(lambda: _applied_lines(stack, f"registry-{DESTINATION}", trace_id), timeout=10)
    assert dest[0]["type"] == "exchange.notification.v1"
    # The trace rode the outbox rows, hence the Kafka headers, of each hop; never the raw number.
    for service in (f"registry-{ORIGIN}", "migrant_exchange"):
        rows = query(
            stack.service(service).dsn,
            "SELECT headers->>'traceparent' AS tp FROM outbox WHERE headers->>'traceparent' LIKE $1",
            f"00-{trace_id}-%",
        )
        assert rows, f"no outbox row of {service} carries the trace"
    assert who not in (stack.run_dir / "logs" / "migrant_exchange.log").read_text(encoding="utf-8")


def test_without_a_traceparent_nothing_is_traced_by_default(stack: Stack) -> None:
    """Tracing is off by default: an untraced request leaves no trace context in the outbox."""
    who = person_id("F")
    r = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}").post(
        "/v1/persons",
        {
            "id_number": who,
            "name": "周敏",
            "sex": "F",
            "birth_date": f"{who[6:10]}-{who[10:12]}-{who[12:14]}",
            "hukou_division": ORIGIN,
        },
    )
    assert r.status_code == 201, r.text
    rows = query(
        stack.service(f"registry-{ORIGIN}").dsn,
        "SELECT headers FROM outbox WHERE event_id = $1",
        __import__("uuid").UUID(r.json()["event_id"]),
    )
    assert rows and "traceparent" not in rows[0]["headers"]


def test_every_service_answers_health_readiness_and_metrics(stack: Stack) -> None:
    for svc in stack.services:
        assert httpx.get(svc.url + "/healthz").json() == {"status": "ok"}
        ready = httpx.get(svc.url + "/readyz").json()
        assert ready["status"] == "ready" and ready["database"] == "ok" and ready["broker"] == "ok"
        metrics = httpx.get(svc.url + "/metrics").text
        for name in ("http_request_duration_seconds_bucket", "events_produced_total", "outbox_backlog"):
            assert name in metrics, (svc.name, name)
    exchange = httpx.get(stack.service("migrant_exchange").url + "/metrics").text
    assert "exchange_notifications_open" in exchange and "consumer_lag{" in exchange


# The system with the console span exporter on (spans go to each service's log).
traced_stack = stack_fixture(
    "traced_stack",
    StackSpec(
        "traced",
        db_prefix="traced_",
        extra_env={"OTEL_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "200"},
    ),
)


def _spans(stack: Stack, service: str, trace_id: str) -> list[dict[str, Any]]:
    """The spans of one trace that the console exporter printed (indented JSON objects)."""
    text = (stack.run_dir / "logs" / f"{service}.log").read_text(encoding="utf-8", errors="replace")
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (at := text.find("\n{\n", at)) >= 0:
        try:
            doc, end = decoder.raw_decode(text, at + 1)
        except ValueError:
            at += 2
            continue
        at = end
        if isinstance(doc, dict) and doc.get("context", {}).get("trace_id") == f"0x{trace_id}":
            spans.append(doc)
    return spans


def test_with_an_exporter_the_consumer_span_continues_the_request_trace(traced_stack: Stack) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    who = _post_migrant(traced_stack, f"00-{trace_id}-{caller_span}-01")
    # The registry's request span is the caller's child ...
    wait_until(
        lambda: [
            s
            for s in _spans(traced_stack, f"registry-{ORIGIN}", trace_id)
            if s["kind"] == "SpanKind.SERVER" and s["parent_id"] == f"0x{caller_span}"
        ],
        timeout=15,
    )
    # ... and the exchange's consumer span continues that trace.
    consumer = wait_until(
        lambda: [
            s
            for s in _spans(traced_stack, "migrant_exchange", trace_id)
            if s["name"] == "apply person.registered.v1"
        ],
        timeout=15,
    )
    assert consumer[0]["kind"] == "SpanKind.CONSUMER" and consumer[0]["parent_id"]
    # A read by identity number is traced by route template: the number never enters a span.
    origin = Api(traced_stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    r = origin.http.get(
        f"/v1/persons/{who}",
        params={"purpose": "registration"},
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    assert r.status_code == 200, r.text
    read = wait_until(
        lambda: [
            s
            for s in _spans(traced_stack, f"registry-{ORIGIN}", trace_id)
            if s["name"] == "GET /v1/persons/{id_number}"
        ],
        timeout=15,
    )
    assert read[0]["attributes"]["http.route"] == "/v1/persons/{id_number}"
    log_text = (traced_stack.run_dir / "logs" / f"registry-{ORIGIN}.log").read_text(encoding="utf-8")
    assert who not in log_text
    # The destination registry's consumer span belongs to the same trace, one hop further.
    assert wait_until(
        lambda: [
            s
            for s in _spans(traced_stack, f"registry-{DESTINATION}", trace_id)
            if s["name"] == "apply exchange.notification.v1"
        ],
        timeout=15,
    )
