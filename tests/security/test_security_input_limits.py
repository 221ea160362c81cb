"""Hostile request bodies get a clear problem+json 4xx, and the service's memory stays bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.stack import ORIGIN, Stack
from shared.limits import MAX_BODY_BYTES

pytestmark = pytest.mark.e2e

SERVICES = [f"registry-{ORIGIN}", "migrant_exchange", "verification"]
POSTS = {
    f"registry-{ORIGIN}": "/v1/persons",
    "migrant_exchange": "/v1/notifications/00000000-0000-0000-0000-000000000000/feedback",
    "verification": "/v1/verifications",
}


def _client(stack: Stack, service: str) -> httpx.Client:
    token = stack.token(f"reg-{ORIGIN}")
    return httpx.Client(
        base_url=stack.service(service).url, timeout=20, headers={"Authorization": f"Bearer {token}"}
    )


def _problem(r: httpx.Response, status: int, rule: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status
    assert any(e["rule"] == rule for e in body.get("errors", [])), body


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("service", SERVICES)
def test_oversized_body_is_413(stack: Stack, service: str) -> None:
    with _client(stack, service) as http:
        r = http.post(
            POSTS[service],
            content=b'{"x": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}',
            headers={"content-type": "application/json"},
        )
    _problem(r, 413, "max-body-size")


def test_chunked_flood_is_cut_off_with_bounded_memory(stack: Stack) -> None:
    svc = stack.service(f"registry-{ORIGIN}")
    assert svc.process is not None
    before = _rss_kib(svc.process.pid)
    sent = 0

    def flood() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"[" * 65536
        for _ in range(800):  # 50 MiB if nobody stops us
            sent += len(chunk)
            yield chunk

    with _client(stack, svc.name) as http:
        try:
            r = http.post("/v1/persons", content=flood(), headers={"content-type": "application/json"})
        except httpx.HTTPError:
            r = None  # the server may close the connection while we are still sending
        if r is not None:
            _problem(r, 413, "max-body-size")
        assert http.get("/healthz").status_code == 200
    growth_mib = (_rss_kib(svc.process.pid) - before) / 1024
    assert growth_mib < 16, f"the service grew by {growth_mib:.1f} MiB while refusing a flood"


def test_deep_json_is_400(stack: Stack) -> None:
    body = b"[" * 10_000 + b"]" * 10_000
    with _client(stack, f"registry-{ORIGIN}") as http:
        r = http.post("/v1/persons", content=body, headers={"content-type": "application/json"})
    _problem(r, 400, "max-json-depth")


def test_invalid_utf8_is_400(stack: Stack) -> None:
    with _client(stack, "verification") as http:
        r = http.post(
            "/v1/verifications",
            content=b'{"certificate_number": "\xff\xfe\xfa", "purpose": "x"}',
            headers={"content-type": "application/json"},
        )
    _problem(r, 400, "utf-8")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/json; charset=latin-1",
    ],
)
def test_wrong_content_type_is_415(stack: Stack, content_type: str) -> None:
    with _client(stack, f"registry-{ORIGIN}") as http:
        r = http.post("/v1/persons", content=b'{"name": "x"}', headers={"content-type": content_type})
    _problem(r, 415, "media-type")


def test_json_with_charset_and_problem_suffix_is_accepted(stack: Stack) -> None:
    with _client(stack, f"registry-{ORIGIN}") as http:
        r = http.post(
            "/v1/persons",
            content=b'{"name": "x"}',
            headers={"content-type": "application/json; charset=UTF-8"},
        )
    assert r.status_code == 422, r.text  # past the door, refused by the schema as it should be


@pytest.mark.parametrize("length", [201, 8_000])
def test_huge_idempotency_key_is_422(stack: Stack, length: int) -> None:
    with _client(stack, f"registry-{ORIGIN}") as http:
        r = http.post("/v1/persons", json={"name": "x"}, headers={"Idempotency-Key": "k" * length})
    _problem(r, 422, "idempotency-key-format")


def test_header_flood_is_refused_by_the_server(stack: Stack) -> None:
    with _client(stack, f"registry-{ORIGIN}") as http:
        try:
            r = http.post("/v1/persons", json={"name": "x"}, headers={"Idempotency-Key": "k" * 200_000})
        except httpx.HTTPError:
            return  # the server dropped the connection: refused, nothing buffered
        assert 400 <= r.status_code < 500
        assert http.get("/healthz").status_code == 200
