"""Registered clients, bearer credentials and scopes.

A credential is ``<client_id>.<secret>``; only SHA-256 of the secret is stored (secrets are
random 256-bit values, so a fast hash is the right one). Comparison is constant-time. The
client table is cached in memory and reloaded on NOTIFY, so a revocation takes effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import asyncpg
import yaml
from fastapi import Depends, Request, Security

from shared.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

ClientKind = Literal["jurisdiction", "kiosk", "department", "operator"]

# What each scope allows; DESIGN.md section 8.
SCOPES = {
    "persons:write": "record vital events and issue certificates for the client's own jurisdiction",
    "persons:read": "read person records the client's jurisdiction holds or shares under an agreement",
    "pregnancy:read": "see pregnancy records (only a person's own origin and destination registries)",
    "verify": "verify certificates",
    "exchange:read": "read notifications and the migrant roster for the client's jurisdiction",
    "exchange:feedback": "post feedback to notifications addressed to the client's jurisdiction",
    "ops:read": "aggregates, flows, indicators, discrepancy queues, the dashboard",
    "ops:resolve": "run reconciliations and resolve discrepancies",
    "audit:read": "read the subject-access log of persons in the client's jurisdiction",
}

DEFAULT_SCOPES: dict[str, list[str]] = {
    "jurisdiction": [
        "persons:write",
        "persons:read",
        "pregnancy:read",
        "verify",
        "exchange:read",
        "exchange:feedback",
        "audit:read",
    ],
    "kiosk": ["verify"],
    "department": ["persons:read", "verify"],
    "operator": ["ops:read", "ops:resolve", "exchange:read"],
}


@dataclass(frozen=True)
class Client:
    client_id: str
    kind: ClientKind
    jurisdiction: str | None
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class _StoredClient:
    client: Client
    secret_hash: bytes
    revoked: bool


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_credential(client_id: str) -> tuple[str, str]:
    """A fresh bearer credential and the hash to store for it."""
    secret = secrets.token_urlsafe(32)
    return f"{client_id}.{secret}", hash_secret(secret)


class ClientRegistry:
    """In-memory view of the ``clients`` table, refreshed on every change."""

    def __init__(self, pool: asyncpg.Pool, dsn: str):
        self.pool = pool
        self.dsn = dsn
        self._clients: dict[str, _StoredClient] = {}
        self._listener: asyncpg.Connection | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reload()
        self._watch = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        if self._watch:
            self._watch.cancel()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()

    async def _listen_forever(self) -> None:
        while True:
            try:
                self._listener = await asyncpg.connect(self.dsn)
                await self._listener.add_listener(
                    "clients_changed", lambda *_: asyncio.ensure_future(self.reload())
                )
                await self.reload()  # changes made while we were not listening
                while not self._listener.is_closed():
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("client listener reconnecting", extra={"error": type(e).__name__})
                await asyncio.sleep(1.0)

    async def reload(self) -> None:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM clients")
        self._clients = {
            r["client_id"]: _StoredClient(
                Client(r["client_id"], r["kind"], r["jurisdiction"], frozenset(r["scopes"])),
                bytes.fromhex(r["secret_hash"]),
                r["revoked_at"] is not None,
            )
            for r in rows
        }

    def authenticate(self, authorization: str | None) -> Client:
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or "." not in credential:
            raise Unauthorized("send 'Authorization: Bearer <client_id>.<secret>'")
        client_id, _, secret = credential.partition(".")
        stored = self._clients.get(client_id)
        presented = hashlib.sha256(secret.encode()).digest()
        expected = stored.secret_hash if stored else hashlib.sha256(b"\0no-such-client").digest()
        if not hmac.compare_digest(presented, expected) or stored is None or stored.revoked:
            raise Unauthorized("the credential is unknown or revoked")
        return stored.client


async def seed_clients(conn: asyncpg.Connection, path: str | Path) -> int:
    """Upsert the clients listed in a YAML/JSON file (hashes only; secrets never touch the file)."""
    entries = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    for e in entries:
        await conn.execute(
            """INSERT INTO clients (client_id, kind, jurisdiction, scopes, secret_hash, revoked_at)
               VALUES ($1,$2,$3,$4,$5, CASE WHEN $6 THEN now() END)
               ON CONFLICT (client_id) DO UPDATE SET kind = EXCLUDED.kind, jurisdiction = EXCLUDED.jurisdiction,
                 scopes = EXCLUDED.scopes, secret_hash = EXCLUDED.secret_hash,
                 revoked_at = CASE WHEN $6 THEN coalesce(clients.revoked_at, now()) END""",
            e["client_id"],
            e["kind"],
            e.get("jurisdiction"),
            e.get("scopes") or DEFAULT_SCOPES[e["kind"]],
            e["secret_hash"],
            bool(e.get("revoked", False)),
        )
    return len(entries)


def _registry(request: Request) -> ClientRegistry:
    return request.app.state.clients  # type: ignore[no-any-return]


async def current_client(request: Request) -> Client:
    # async on purpose: a plain ``def`` dependency would run in the thread pool on every request
    client = _registry(request).authenticate(request.headers.get("authorization"))
    request.state.client_id = client.client_id
    return client


CurrentClient = Annotated[Client, Depends(current_client)]


def require(scope: str) -> object:
    """A dependency that admits only clients holding ``scope``."""

    async def _check(client: CurrentClient) -> Client:
        if not client.has(scope):
            raise Forbidden(f"this client lacks the '{scope}' scope", rule="scope", scope=scope)
        return client

    return Security(_check, scopes=[scope])  # the scope is named in the OpenAPI document
