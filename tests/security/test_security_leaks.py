"""No secret and no raw identity number in logs, errors, metrics or Kafka keys.

Runs last (see conftest.py) and scans everything the run wrote: every stack's service logs,
every database's outbox keys, dead-letter reasons and stored error answers, and the metrics
of the session stack. Credentials are stored hashed and compared in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from stdnum.cn import ric

from devstack.embedded import EmbeddedPostgres
from devstack.stack import Stack
from shared import auth
from shared.errors import Unauthorized
from shared.settings import DEV_SUBJECT_KEY

pytestmark = pytest.mark.e2e

_CANDIDATE = re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")


def raw_id_numbers(text: str) -> list[str]:
    """Identity numbers in text: 18 characters that pass the GB 11643 check digit and date."""
    return [m for m in _CANDIDATE.findall(text) if ric.is_valid(m)]


def _secrets(workdir: Path) -> list[str]:
    found = {DEV_SUBJECT_KEY, "dev-only-key-encryption-key-change-me"}
    for description in workdir.rglob("stack.json"):
        for client in json.loads(description.read_text()).get("clients", []):
            found.add(client["token"].split(".", 1)[1])
    return sorted(found)


def test_logs_hold_no_secret_and_no_identity_number(stack: Stack, workdir: Path) -> None:
    secrets = _secrets(workdir)
    assert len(secrets) > 2, "no stack credentials found to look for"
    logs = [p for p in workdir.rglob("*.log") if p.parent.name == "logs" and p.name != "broker.log"]
    assert logs, "no service logs were written"
    leaks: list[str] = []
    for path in logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for hit in raw_id_numbers(line):
                leaks.append(f"{path.relative_to(workdir)}:{number}: identity number {hit[:6]}…")
            for secret in secrets:
                if secret in line:
                    leaks.append(f"{path.relative_to(workdir)}:{number}: a secret ({secret[:4]}…)")
    print(f"\nscanned {len(logs)} log files, {sum(p.stat().st_size for p in logs) // 1024} KiB")
    assert not leaks, "\n".join(leaks[:20])


# What the scan reads from each service database: the texts a raw identity number must not be in.
_SCANNED = {
    "Kafka key": "SELECT DISTINCT key AS text FROM outbox",
    "dead-letter reason": "SELECT reason AS text FROM dead_letters",
    "audit subject": "SELECT subject AS text FROM audit_log WHERE subject IS NOT NULL",
}


def test_kafka_keys_dead_letters_and_stored_errors_are_clean(pg: EmbeddedPostgres) -> None:
    async def scan(name: str) -> list[str] | None:
        """The leaks in one database, or None when it is no service's (it has no outbox)."""
        conn = await asyncpg.connect(pg.dsn(name))
        try:
            tables = {
                r["relname"] for r in await conn.fetch("SELECT relname FROM pg_class WHERE relkind = 'r'")
            }
            if "outbox" not in tables:
                return None
            leaks = [
                f"{name}: {what} holds identity number {hits[0][:6]}…"
                for what, sql in _SCANNED.items()
                if what != "audit subject" or "audit_log" in tables
                for r in await conn.fetch(sql)
                if (hits := raw_id_numbers(r["text"]))
            ]
            # Error answers are few (bytes, not text, in the table): each is read and decoded.
            errors = await conn.fetch("SELECT body FROM idempotency_keys WHERE status_code >= 400")
            return leaks + [
                f"{name}: stored error answer"
                for r in errors
                if raw_id_numbers(bytes(r["body"]).decode(errors="replace"))
            ]
        finally:
            await conn.close()

    async def scan_all() -> list[list[str] | None]:
        admin = await asyncpg.connect(pg.admin_dsn)
        try:
            databases = await admin.fetch("SELECT datname FROM pg_database WHERE NOT datistemplate")
        finally:
            await admin.close()
        return [await scan(r["datname"]) for r in databases]

    found = asyncio.run(scan_all())
    scanned = [leaks for leaks in found if leaks is not None]
    print(f"\nscanned {len(scanned)} service databases of {len(found)}")
    assert len(scanned) >= 4, f"only {len(scanned)} service databases found"
    leaks = [leak for db in scanned for leak in db]
    assert not leaks, "\n".join(leaks[:20])


def test_metrics_hold_no_identity_number_or_secret(stack: Stack, workdir: Path) -> None:
    secrets = _secrets(workdir)
    for svc in stack.services:
        text = httpx.get(svc.url + "/metrics", timeout=10).text
        assert "http_request_duration_seconds" in text
        assert not raw_id_numbers(text), f"{svc.name} exposes an identity number in its metrics"
        assert not any(s in text for s in secrets), f"{svc.name} exposes a secret in its metrics"
        # Routes are labelled by template, never by the raw path (paths carry identity numbers).
        assert "/v1/persons/{id_number}" in text or "id_number" not in text


def test_error_answers_do_not_echo_identity_numbers(stack: Stack) -> None:
    from tests.helpers import person_id

    n = person_id()
    base = stack.service("verification").url
    headers = {"Authorization": f"Bearer {stack.token('kiosk-440703')}"}
    bad = [
        {"certificate_number": "x" * 100, "holder_id_number": n, "purpose": "nope"},
        {
            "certificate_number": "320412-2026-ABCDEFGH",
            "holder_id_number": n[:-1] + ("0" if n[-1] != "0" else "1"),
            "purpose": "registration",
        },
        {"certificate_number": n, "holder_id_number": n, "purpose": "registration", "extra": n},
    ]
    for body in bad:
        r = httpx.post(base + "/v1/verifications", json=body, headers=headers)
        assert r.status_code >= 400
        assert n not in r.text and n[:-1] not in r.text, (
            f"the error answer echoes the identity number: {r.text}"
        )


def test_credentials_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown client, wrong secret and right secret all take the same hmac.compare_digest path."""
    registry = auth.ClientRegistry(pool=None, dsn="")  # type: ignore[arg-type]
    secret = "s3cret-value"  # noqa: S105 - a test credential
    registry._clients = {
        "kiosk-1": auth._StoredClient(
            auth.Client("kiosk-1", "kiosk", "440703", frozenset({"verify"})),
            hashlib.sha256(secret.encode()).digest(),
            False,
        )
    }
    calls: list[tuple[Any, Any]] = []
    real = auth.hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for credential in ("nobody.s3cret-value", "kiosk-1.wrong"):
        with pytest.raises(Unauthorized):
            registry.authenticate(f"Bearer {credential}")
    assert registry.authenticate(f"Bearer kiosk-1.{secret}").client_id == "kiosk-1"
    assert len(calls) == 3 * 2  # the current and the previous (rotated) secret, on every path alike
    assert all(len(a) == len(b) == 32 for a, b in calls), "digests of equal length, never raw secrets"
