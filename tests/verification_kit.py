"""Test kit of the verification tests: the service alone on its own broker, and a registry-like issuer.

The issuer signs certificates with Ed25519 keys of its own and publishes certificate.lifecycle.v1
and record.corrected.v1 events to the real broker exactly as a registry's outbox relay would
(structured CloudEvent, key = pseudonymous subject), and serves its JWKS over real HTTP. So the
verification tests do not depend on how far the registry has come.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import asyncpg
import httpx

from devstack.embedded import free_port
from devstack.stack import ServiceProcess, Stack
from shared import signing
from shared.auth import new_credential
from shared.clients_file import parse_entries, read_file, sync_clients, write_file
from shared.events import payloads as p
from shared.events.catalog import spec_for
from shared.events.envelope import Envelope, new_event_id
from shared.events.signature import sign_value
from shared.identity import subject_key
from shared.kafka import ensure_topics, make_producer
from shared.settings import BaseServiceSettings

T = TypeVar("T")


class VerificationStack(Stack):
    """Only the verification service (plus its own broker), with the settings a test needs."""

    def plan(self) -> None:
        self.services = [ServiceProcess("verification", "services.verification", free_port(), "verification")]

    def describe(self) -> dict[str, Any]:
        return {"services": {s.name: {"url": s.url} for s in self.services}, "clients": self.clients}

    @property
    def url(self) -> str:
        return self.service("verification").url

    @property
    def dsn(self) -> str:
        return self.service("verification").dsn

    def add_client(self, client_id: str, kind: str = "kiosk", scopes: list[str] | None = None) -> str:
        """Register a client as an operator does: in the (authoritative) clients file, applied to
        the service's database at once; returns its bearer token."""
        token, secret_hash = new_credential(client_id)
        path = self.run_dir / "clients.yaml"
        entry = {"client_id": client_id, "kind": kind, "jurisdiction": "440703", "secret_hash": secret_hash}
        entries = [
            *read_file(path),
            *parse_entries([entry | ({"scopes": scopes} if scopes is not None else {})]),
        ]
        write_file(path, entries)

        async def apply() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                async with conn.transaction():
                    await sync_clients(conn, entries)
            finally:
                await conn.close()

        run(apply())
        return token

    def http(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {token}"})

    def issuer(self, jurisdiction: str) -> FakeIssuer:
        """An issuer signing its events with the jurisdiction's key in this stack's trust list."""
        signer = self.trust.keyring(jurisdiction).signing_key(jurisdiction, dt.datetime.now(dt.UTC))
        return FakeIssuer(jurisdiction, self.bootstrap, event_signer=signer)


async def _execute(dsn: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class IssuedCertificate:
    number: str
    holder_id_number: str
    token: str
    status_index: int
    key_id: str
    subject: str


@dataclass
class _Key:
    kid: str
    private: Any
    retired_at: dt.datetime | None = None


@dataclass
class FakeIssuer:
    """A registry as the verification service sees it: signed certificates, events, a JWKS."""

    jurisdiction: str
    bootstrap: str
    subject_secret: str = "dev-only-subject-key-change-me"  # noqa: S105 - the development default
    keys: list[_Key] = field(default_factory=list)
    next_index: int = 0
    sequences: dict[str, int] = field(default_factory=dict)
    # The issuer's event-signing key (kid, key) from the stack's trust material; None publishes
    # unsigned events, which the verification service refuses.
    event_signer: tuple[str, Any] | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _producer: Any = None

    def __post_init__(self) -> None:
        self.rotate()

    # --- keys -------------------------------------------------------------------------------------
    def rotate(self) -> str:
        """A new active key; the previous one is retired but stays published (overlap)."""
        now = dt.datetime.now(dt.UTC)
        for k in self.keys:
            k.retired_at = k.retired_at or now
        kid = f"{self.jurisdiction}-{now:%Y%m%d%H%M%S}-{os.urandom(3).hex()}"
        self.keys.append(_Key(kid, signing.new_private_key()))
        return kid

    def drop_retired(self) -> None:
        """The overlap window ended: retired keys are no longer published."""
        self.keys = [k for k in self.keys if k.retired_at is None]

    @property
    def active(self) -> _Key:
        return next(k for k in self.keys if k.retired_at is None)

    def jwk_of(self, key: _Key) -> dict[str, Any]:
        return signing.jwk(key.kid, signing.public_bytes(key.private))

    def jwks(self) -> dict[str, Any]:
        """What a registry's GET /v1/keys serves."""
        return {
            "keys": [
                self.jwk_of(k)
                | {
                    "jurisdiction": self.jurisdiction,
                    "status": "retired" if k.retired_at else "active",
                    "expires_at": (k.retired_at + dt.timedelta(days=400)).isoformat()
                    if k.retired_at
                    else None,
                }
                for k in self.keys
            ]
        }

    # --- certificates -----------------------------------------------------------------------------
    def issue(
        self,
        holder_id_number: str,
        name: str = "李娜",
        *,
        marital_status: str = "married",
        children: int = 1,
        valid_days: int = 180,
        issued_on: dt.date | None = None,
        with_jwk: bool = False,
        number: str | None = None,
    ) -> IssuedCertificate:
        issued_on = issued_on or dt.date.today()
        number = number or self.new_number(issued_on)
        key = self.active
        subject = subject_key(holder_id_number, self.subject_secret.encode())
        index, self.next_index = self.next_index, self.next_index + 1
        claims = {
            "iss": self.jurisdiction,
            "num": number,
            "sub": subject,
            "name": name,
            "ms": marital_status,
            "ch": children,
            "iat": issued_on.isoformat(),
            "exp": (issued_on + dt.timedelta(days=valid_days)).isoformat(),
            "sti": index,
        }
        token = signing.sign(claims, key.private, key.kid)
        data = p.CertificateIssuedV1(
            certificate_number=number,
            holder_id_number=holder_id_number,
            holder_name=name,
            marital_status=marital_status,  # type: ignore[arg-type]
            children_birth_dates=[dt.date(2020, 1, 1 + i) for i in range(children)],
            issuer=self.jurisdiction,
            issued_on=issued_on,
            valid_until=issued_on + dt.timedelta(days=valid_days),
            key_id=key.kid,
            status_index=index,
            token=token,
            public_key_jwk=p.PublicKeyJwk(**self.jwk_of(key)) if with_jwk else None,
        )
        self.publish("certificate.issued.v1", subject, data)
        return IssuedCertificate(number, holder_id_number, token, index, key.kid, subject)

    def new_number(self, issued_on: dt.date | None = None) -> str:
        """A certificate number of this issuer, as a registry mints them."""
        suffix = base64.b32encode(os.urandom(5)).decode()[:8]
        return f"{self.jurisdiction}-{(issued_on or dt.date.today()).year}-{suffix}"

    def revoke(self, cert: IssuedCertificate, reason: str = "holder's circumstances changed") -> None:
        data = p.CertificateRevokedV1(
            certificate_number=cert.number,
            issuer=self.jurisdiction,
            revoked_on=dt.date.today(),
            reason=reason,
            status_index=cert.status_index,
        )
        self.publish("certificate.revoked.v1", cert.subject, data)

    def correct(self, cert: IssuedCertificate, changes: dict[str, Any]) -> None:
        data = p.RecordCorrectedV1(
            correction_id=new_event_id(),
            corrected_event_id=new_event_id(),
            record_type="certificate",
            record_id=cert.number,
            changes=changes,
            reason="registrar corrected a typing error",
        )
        self.publish("record.corrected.v1", cert.subject, data)

    # --- the broker ---------------------------------------------------------------------------------
    def publish(self, event_type: str, subject: str, data: Any) -> uuid.UUID:
        """Publish one signed event; returns its id."""
        spec = spec_for(event_type)
        event = Envelope[spec.payload](  # type: ignore[name-defined]
            id=new_event_id(),
            source=f"/registry/{self.jurisdiction}",
            type=event_type,
            subject=subject,
            time=dt.datetime.now(dt.UTC),
            dataschema=spec.dataschema,
            sequence=self._next_sequence(subject),
            data=data,
        )
        value = event.model_dump_json().encode()
        if self.event_signer is not None:
            value = sign_value(value, *self.event_signer)
        self._call(self._send(spec.topic, subject, value))
        return event.id

    def _next_sequence(self, subject: str) -> int:
        self.sequences[subject] = self.sequences.get(subject, 0) + 1
        return self.sequences[subject]

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        if self._producer is None:
            settings = BaseServiceSettings(kafka_bootstrap_servers=self.bootstrap, service_name="fake-issuer")
            await ensure_topics(settings)
            self._producer = make_producer(settings)
            await self._producer.start()
        await self._producer.send_and_wait(topic, value, key=key.encode())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def close(self) -> None:
        if self._loop is not None:
            if self._producer is not None:
                self._call(self._producer.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)


class JwksServer:
    """Serves issuers' JWKS at /<jurisdiction>/v1/keys over real HTTP, as registries will."""

    def __init__(self) -> None:
        self.issuers: dict[str, FakeIssuer] = {}
        self.available = True
        kit = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer = kit.issuers.get(self.path.strip("/").split("/")[0])
                if issuer is None or not kit.available:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps(issuer.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, jurisdiction: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{jurisdiction}/v1/keys"

    def close(self) -> None:
        self.server.shutdown()


class LazyJwks:
    """A module's JWKS server, made by whichever thread asks first: a stack started ahead of the
    module (``tests.stacks_ahead``) is told its address before the module's fixtures run."""

    def __init__(self) -> None:
        self._server: JwksServer | None = None
        self._lock = threading.Lock()

    @property
    def server(self) -> JwksServer:
        with self._lock:
            if self._server is None:
                self._server = JwksServer()
            return self._server

    def serving(self) -> Iterator[JwksServer]:
        """For a module fixture to yield from: the server, closed when the module is done."""
        yield self.server
        with self._lock:
            if self._server is not None:
                self._server.close()
                self._server = None
