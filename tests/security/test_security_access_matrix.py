"""Every client kind against every endpoint: allowed or 403, as DESIGN.md section 8 says.

Routes are read from each service's OpenAPI document at test time, so a new endpoint is
covered the day it appears; one missing from ``POLICY`` fails the test until its policy is
written down here.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest

from devstack.credentials import EXCHANGE_SERVICE
from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.auth import hash_secret
from tests.helpers import person_id, query

pytestmark = pytest.mark.e2e

J, K, D, OP = "jurisdiction", "kiosk", "department", "operator"
SV = "service"  # a service's own credential: the exchange's towards the registries
PUBLIC = "anonymous"  # no credential needed (public keys, pages, probes)
EVERYONE = frozenset({PUBLIC, J, K, D, OP, SV})

# (service, METHOD, path) -> the client kinds allowed past authorisation. DESIGN.md sections 7-8.
POLICY: dict[tuple[str, str, str], frozenset[str]] = {
    # every service
    **{
        (s, "GET", p): EVERYONE
        for s in ("registry", "exchange", "verification")
        for p in ("/healthz", "/readyz", "/asyncapi.json", "/v1/schemas", "/v1/schemas/{event_type}")
    },
    # registry: writes by the jurisdiction itself; reads by jurisdictions and departments
    **{
        ("registry", "POST", p): frozenset({J})
        for p in (
            "/v1/persons",
            "/v1/marriages",
            "/v1/marriages/{marriage_id}/dissolution",
            "/v1/migrations",
            "/v1/pregnancies",
            "/v1/pregnancies/{pregnancy_id}/closure",
            "/v1/births",
            "/v1/corrections",
            "/v1/certificates",
            "/v1/certificates/{number}/revocation",
            "/v1/batches",  # any of the above, each item with its kind's scope
        )
    },
    ("registry", "GET", "/v1/persons/{id_number}"): frozenset({J, D}),
    ("registry", "GET", "/v1/persons/{id_number}/disclosures"): frozenset({J}),
    ("registry", "GET", "/v1/keys"): EVERYONE,
    ("registry", "POST", "/v1/keys/rotation"): frozenset({J}),
    ("registry", "GET", "/v1/certificates/{number}/qr.svg"): frozenset({J, D}),
    ("registry", "GET", "/v1/certificates/{number}/qr.png"): frozenset({J, D}),
    ("registry", "GET", "/v1/certificates/{number}/document"): frozenset({J, D}),
    # pregnancy data: only the person's own registries (never kiosks, departments or operators)
    ("registry", "GET", "/v1/pregnancies/{pregnancy_id}"): frozenset({J}),
    # the registries' internal reconciliation (per-subject record hashes, pregnancies included,
    # and re-sends) serves the exchange's service credential alone: never an operator, whose token
    # sits in a browser or a terminal (DESIGN.md section 10: operators see operations, not people)
    ("registry", "GET", "/v1/internal/reconciliation/digests"): frozenset({SV}),
    ("registry", "POST", "/v1/internal/reconciliation/digests"): frozenset({SV}),
    ("registry", "POST", "/v1/internal/reconciliation/records"): frozenset({SV}),
    ("registry", "POST", "/v1/internal/reconciliation/corrections"): frozenset({SV}),
    # exchange: jurisdictions see their own traffic, operators see aggregates and case queues
    ("exchange", "GET", "/v1/notifications"): frozenset({J, OP}),
    ("exchange", "GET", "/v1/notifications/{notification_id}"): frozenset({J, OP}),
    ("exchange", "POST", "/v1/notifications/{notification_id}/feedback"): frozenset({J}),
    ("exchange", "GET", "/v1/migrants"): frozenset({J, OP}),
    ("exchange", "POST", "/v1/reconciliations"): frozenset({OP}),
    ("exchange", "GET", "/v1/reconciliations/{reconciliation_id}"): frozenset({OP}),
    ("exchange", "GET", "/v1/discrepancies"): frozenset({OP}),
    ("exchange", "POST", "/v1/discrepancies/{discrepancy_id}/resolution"): frozenset({OP}),
    ("exchange", "GET", "/v1/indicators"): frozenset({OP}),
    ("exchange", "GET", "/v1/flows"): frozenset({OP}),
    ("exchange", "GET", "/v1/stream"): frozenset({OP}),
    ("exchange", "GET", "/dashboard"): EVERYONE,
    ("exchange", "GET", "/v1/dead-letters"): frozenset({OP}),
    ("exchange", "GET", "/v1/dead-letters/{dead_letter_id}"): frozenset(
        {OP}
    ),  # the page; its data comes from the scoped API
    # verification: anyone holding 'verify'; keys and status lists are public for offline kiosks
    ("verification", "POST", "/v1/verifications"): frozenset({J, K, D}),
    ("verification", "POST", "/v1/verifications/token"): frozenset({J, K, D}),
    ("verification", "GET", "/v1/keys"): EVERYONE,
    ("verification", "GET", "/v1/status-lists/{issuer}"): EVERYONE,
    ("verification", "GET", "/kiosk"): EVERYONE,
    # the kiosk's files (a web app that works offline); checks made offline are reported by a verifier
    **{
        ("verification", "GET", f"/kiosk/{name}"): EVERYONE
        for name in (
            "sw.js",
            "kiosk.js",
            "offline.js",
            "camera.js",
            "jsQR.js",
            "manifest.webmanifest",
            "icon.svg",
        )
    },
    ("verification", "POST", "/v1/verifications/offline"): frozenset({J, K, D}),
    ("verification", "GET", "/v1/audit/verify"): frozenset({J, OP}),  # audit:read or ops:read
}

SERVICES = {
    "registry": f"registry-{DESTINATION}",
    "exchange": "migrant_exchange",
    "verification": "verification",
}
# Every client below is homed at (or, for the operator and the service, unbound to) the destination
# jurisdiction, so the registry under test is the one that serves it: refusals are about kinds, not places.
CLIENTS = {
    J: f"reg-{DESTINATION}",
    K: f"kiosk-{DESTINATION}",
    D: f"dept-{DESTINATION}",
    OP: "operator",
    SV: EXCHANGE_SERVICE,
}


def _routes(stack: Stack) -> list[tuple[str, str, str, dict[str, Any]]]:
    routes = []
    for service, name in SERVICES.items():
        doc = httpx.get(stack.service(name).url + "/openapi.json", timeout=10).json()
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    routes.append((service, method.upper(), path, op))
    return routes


def _value(name: str, schema: dict[str, Any]) -> str:
    """A plausible value for a parameter: enough to get past validation to the handler."""
    schema = next(iter(schema.get("anyOf", [])), schema) if "anyOf" in schema else schema
    if "enum" in schema:
        return str(schema["enum"][0])
    if name in ("id_number", "holder_id_number"):
        return person_id()
    if name in ("issuer", "jurisdiction", "origin", "destination") or "division" in name:
        return DESTINATION
    if name == "number":
        return f"{DESTINATION}-2026-ABCDEFGH"
    if schema.get("format") == "uuid" or name.endswith("_id") or name == "id":
        return str(uuid.uuid4())
    if schema.get("type") == "integer":
        return str(schema.get("minimum", 1))
    return "x"


def _request(base: str, method: str, path: str, op: dict[str, Any], token: str | None) -> httpx.Response:
    params, url = {}, path
    for p in op.get("parameters", []):
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", _value(p["name"], p.get("schema", {})))
        elif p["in"] == "query" and (p.get("required") or p["name"] in ("origin", "jurisdiction")):
            params[p["name"]] = _value(p["name"], p.get("schema", {}))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base, timeout=10) as http:
        request = http.build_request(
            method, url, params=params, headers=headers, json={} if method != "GET" else None
        )
        response = http.send(request, stream=True)  # /v1/stream never ends: only the status matters
        response.close()
        return response


def test_every_endpoint_has_a_written_policy(stack: Stack) -> None:
    unknown = [f"{s} {m} {p}" for s, m, p, _ in _routes(stack) if (s, m, p) not in POLICY]
    assert not unknown, (
        "endpoints without an access policy in tests/security/test_security_access_matrix.py POLICY "
        f"(add who may call them, per DESIGN.md section 8): {unknown}"
    )


@pytest.mark.parametrize("kind", [PUBLIC, J, K, D, OP, SV])
def test_each_client_kind_is_allowed_or_refused_as_the_policy_says(stack: Stack, kind: str) -> None:
    wrong = []
    for service, method, path, op in _routes(stack):
        allowed = POLICY.get((service, method, path))
        if allowed is None:
            continue  # reported by the test above
        token = None if kind == PUBLIC else stack.token(CLIENTS[kind])
        r = _request(stack.service(SERVICES[service]).url, method, path, op, token)
        if kind in allowed:
            ok = r.status_code not in (401, 403) and r.status_code < 500
        else:
            ok = r.status_code == (401 if kind == PUBLIC else 403)
            if ok:
                ok = r.headers["content-type"].startswith("application/problem+json")
        if not ok:
            wrong.append(f"{service} {method} {path}: {r.status_code}")
    assert not wrong, f"{kind}: " + "; ".join(wrong)


def test_a_jurisdiction_cannot_write_into_another_jurisdictions_registry(stack: Stack) -> None:
    base = stack.service(f"registry-{ORIGIN}").url
    n = person_id()
    r = httpx.post(
        base + "/v1/persons",
        json={
            "id_number": n,
            "name": "李雷",
            "sex": "M",
            "birth_date": "1990-01-01",
            "hukou_division": ORIGIN,
        },
        headers={"Authorization": f"Bearer {stack.token(f'reg-{DESTINATION}')}"},
    )
    assert r.status_code == 403, r.text


def test_a_jurisdiction_cannot_read_another_jurisdictions_notifications(stack: Stack) -> None:
    r = httpx.get(
        stack.service("migrant_exchange").url + "/v1/notifications",
        params={"jurisdiction": ORIGIN},
        headers={"Authorization": f"Bearer {stack.token(f'reg-{DESTINATION}')}"},
    )
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer reg-440703.not-the-secret",
        "Bearer nobody.secret",
        "Bearer reg-440703",
        "Basic cmVnLTQ0MDcwMzp4",
        "Bearer " + "a" * 5000 + "." + "b" * 5000,
        "",
    ],
)
def test_bad_credentials_are_401_problems(stack: Stack, authorization: str) -> None:
    r = httpx.get(
        stack.service("migrant_exchange").url + "/v1/notifications",
        headers={"Authorization": authorization} if authorization else {},
    )
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers.get("www-authenticate") == "Bearer"


def test_a_revoked_credential_is_refused_at_once(stack: Stack) -> None:
    svc = stack.service("verification")
    client_id = "kiosk-revoke-" + uuid.uuid4().hex[:8]
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    query(
        svc.dsn,
        "INSERT INTO clients (client_id, kind, jurisdiction, scopes, secret_hash) VALUES ($1,'kiosk',$2,$3,$4)",
        client_id,
        DESTINATION,
        ["verify"],
        hash_secret(secret),
    )
    headers = {"Authorization": f"Bearer {client_id}.{secret}"}
    body = {"certificate_number": "X-1", "holder_id_number": person_id(), "purpose": "x"}
    url = svc.url + "/v1/verifications"
    deadline = time.monotonic() + 5
    while httpx.post(url, json=body, headers=headers).status_code == 401:  # the NOTIFY reload
        assert time.monotonic() < deadline, "a new client was never admitted"
        time.sleep(0.02)

    keyed = {**headers, "Idempotency-Key": "before-revocation"}
    assert httpx.post(url, json=body, headers=keyed).status_code == 422  # answer stored for replay
    query(svc.dsn, "UPDATE clients SET revoked_at = now() WHERE client_id = $1", client_id)
    revoked_at = time.monotonic()
    statuses = []
    while time.monotonic() - revoked_at < 1.0:
        statuses.append(httpx.post(url, json=body, headers=headers).status_code)
        if statuses[-1] == 401:
            break
    assert statuses[-1] == 401, f"still admitted 1 s after revocation: {statuses}"
    # the idempotency cache must not answer for a revoked client either
    r = httpx.post(url, json=body, headers=keyed)
    assert r.status_code == 401, r.text


def test_credentials_are_stored_only_as_hashes(stack: Stack) -> None:
    for svc in stack.services:
        rows = query(svc.dsn, "SELECT client_id, secret_hash FROM clients")
        assert rows
        stored = {r["client_id"]: r["secret_hash"] for r in rows}
        for c in stack.clients:
            secret = c["token"].split(".", 1)[1]
            assert stored[c["client_id"]] == hash_secret(secret)
            assert secret not in repr(rows)
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in stored.values())
    clients_file = (stack.run_dir / "clients.yaml").read_text()
    assert not any(c["token"].split(".", 1)[1] in clients_file for c in stack.clients)


def test_an_idempotent_replay_needs_the_real_credential(stack: Stack) -> None:
    """The stored answer of a POST must not be handed to whoever merely knows the client id and key."""
    base = stack.service(f"registry-{DESTINATION}").url
    n = person_id()
    body = {
        "id_number": n,
        "name": "韩梅梅",
        "sex": "F",
        "birth_date": f"{n[6:10]}-{n[10:12]}-{n[12:14]}",
        "hukou_division": DESTINATION,
    }
    key = {"Idempotency-Key": "replay-" + uuid.uuid4().hex}
    good = {"Authorization": f"Bearer {stack.token(f'reg-{DESTINATION}')}", **key}
    first = httpx.post(base + "/v1/persons", json=body, headers=good)
    assert first.status_code == 201, first.text
    forged = {"Authorization": f"Bearer reg-{DESTINATION}.forged-secret", **key}
    r = httpx.post(base + "/v1/persons", json=body, headers=forged)
    assert r.status_code == 401, r.text
    assert n not in r.text
    again = httpx.post(base + "/v1/persons", json=body, headers=good)
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
