"""Registered clients, bearer credentials and scopes.

A credential is ``<client_id>.<secret>``; only SHA-256 of the secret is stored (secrets are
random 256-bit values, so a fast hash is the right one). Comparison is constant-time. The
client table is cached in memory and reloaded on NOTIFY, so a revocation takes effect at once.
The clients file (``shared.clients_file``) is authoritative: it is applied at start and
again whenever it changes; a credential past its expiry is refused, and after a rotation the
previous secret is accepted until its overlap ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import asyncpg
from fastapi import Depends, Request, Security

from shared.db import unit_of_work
from shared.errors import Forbidden, Unauthorized
from shared.observability import Duty

if TYPE_CHECKING:
    from shared.clients_file import ClientSources, Synced

log = logging.getLogger(__name__)

# ``service``: a service's own credential towards another (the exchange's towards the registries),
# never a person's: no operator, wall screen or terminal holds one.
ClientKind = Literal["jurisdiction", "kiosk", "department", "operator", "service"]

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
    "reconcile:internal": "call a registry's internal reconciliation endpoints (the exchange's service client only)",
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
    "service": ["reconcile:internal"],
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
    expires_at: dt.datetime | None = None
    previous_hash: bytes | None = None
    previous_expires_at: dt.datetime | None = None

    def admits(self, presented: bytes, now: dt.datetime) -> bool:
        """The current secret until it expires, the previous one until its overlap ends (constant time)."""
        current = hmac.compare_digest(presented, self.secret_hash)
        previous = hmac.compare_digest(presented, self.previous_hash or _NO_SECRET)
        current_live = self.expires_at is None or now < self.expires_at
        previous_live = self.previous_expires_at is not None and now < self.previous_expires_at
        return not self.revoked and ((current and current_live) or (previous and previous_live))


_NO_SECRET = hashlib.sha256(b"\0no-such-client").digest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_credential(client_id: str) -> tuple[str, str]:
    """A fresh bearer credential and the hash to store for it."""
    secret = secrets.token_urlsafe(32)
    return f"{client_id}.{secret}", hash_secret(secret)


def _log_synced(synced: Synced) -> None:
    facts = {"clients": synced.clients, "revision": synced.revision, "applied_before": synced.applied_before}
    if synced.applied:
        log.info("clients file applied", extra=facts)
    else:  # this replica's copy is behind the edit another process applied
        log.warning("clients file older than the revision applied here: left as it is", extra=facts)


class ClientRegistry:
    """In-memory view of the ``clients`` table, refreshed on every change. A notified change whose
    read failed is read again every second until a read succeeds (each read a round of the
    ``clients-refresh`` duty: alert ``BackgroundDutyFailing``)."""

    def __init__(
        self, pool: asyncpg.Pool, dsn: str, sources: ClientSources | None = None, service: str = "service"
    ):
        self.pool = pool
        self.dsn = dsn
        self.sources = sources
        self._rounds = Duty(service, "clients-refresh")
        self._clients: dict[str, _StoredClient] = {}
        self._listener: asyncpg.Connection | None = None
        self._watch: asyncio.Task[None] | None = None
        self._reloading = asyncio.Lock()
        self._asked = 0  # reloads asked for (a change notified), and the last one a read covers
        self._read = 0

    async def start(self) -> None:
        """Apply the clients file (a bad file stops the start), load the table, watch both."""
        if self.sources:
            async with unit_of_work(self.pool, wake=False) as conn:
                _log_synced(await self.sources.sync(conn))
        await self.reload()
        self._watch = asyncio.create_task(self._listen_forever())

    async def resync_if_changed(self) -> None:
        """Apply the clients file again if it changed; a broken file is logged and not applied."""
        if not self.sources or not self.sources.changed():
            return
        from shared.clients_file import ClientsFileError

        try:
            async with unit_of_work(self.pool, wake=False) as conn:
                _log_synced(await self.sources.sync(conn))
        except (ClientsFileError, OSError) as e:
            log.error("clients file refused", extra={"error": str(e)})

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
                    "clients_changed", lambda *_: asyncio.ensure_future(self._refresh())
                )
                await self.reload()  # changes made while we were not listening
                while not self._listener.is_closed():
                    await asyncio.sleep(1.0)
                    await self.resync_if_changed()
                    if self._read < self._asked:  # a change notified, and its read failed
                        await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("client listener reconnecting", extra={"error": type(e).__name__})
                self._drop_listener()
                await asyncio.sleep(1.0)

    def _drop_listener(self) -> None:
        """Close the listener's connection before another one opens: left to the garbage
        collector, each error's connection stayed open until it was finalized. Closed at once,
        without waiting on a server that may be the reason for the error."""
        if self._listener is not None:
            self._listener.terminate()
            self._listener = None

    async def _refresh(self) -> None:
        """``reload`` for a notified change, counted; a failure is logged and read again later
        (``_listen_forever``): nobody awaits this task, so its error would otherwise be lost with
        the change, and a revoked client keep its access until some other change."""
        try:
            with self._rounds.round():
                await self.reload()
        except Exception as e:
            log.warning("clients not read again; retrying", extra={"error": type(e).__name__})

    async def reload(self) -> None:
        """Read the table again, after every change notified so far. Reads go one at a time, each
        after the last: two overlapping reads could otherwise finish in the other order and the
        older one, read before a revocation, put the revoked client back until the next change.
        Changes notified while a read waits are covered by the one read that follows them."""
        self._asked += 1
        asked = self._asked
        async with self._reloading:
            if self._read >= asked:
                return  # a read that started after this change already took it in
            covers = self._asked
            rows = await self._rows()
            self._clients, self._read = self._admitted(rows), covers

    async def _rows(self) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch("SELECT * FROM clients")
        return rows

    @staticmethod
    def _admitted(rows: list[asyncpg.Record]) -> dict[str, _StoredClient]:
        return {
            r["client_id"]: _StoredClient(
                Client(r["client_id"], r["kind"], r["jurisdiction"], frozenset(r["scopes"])),
                bytes.fromhex(r["secret_hash"]),
                r["revoked_at"] is not None,
                r["expires_at"],
                bytes.fromhex(r["previous_secret_hash"]) if r["previous_secret_hash"] else None,
                r["previous_expires_at"],
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
        admitted = (stored or _UNKNOWN).admits(presented, dt.datetime.now(dt.UTC))
        if not admitted or stored is None:
            raise Unauthorized("the credential is unknown, expired or revoked")
        return stored.client


_UNKNOWN = _StoredClient(Client("", "kiosk", None, frozenset()), _NO_SECRET, True)


def _registry(request: Request) -> ClientRegistry:
    return request.app.state.clients  # type: ignore[no-any-return]


def _authenticated(request: Request) -> Client:
    client = _registry(request).authenticate(request.headers.get("authorization"))
    request.state.client_id = client.client_id
    return client


async def current_client(request: Request) -> Client:
    # async on purpose: a plain ``def`` dependency would run in the thread pool on every request
    return _authenticated(request)


CurrentClient = Annotated[Client, Depends(current_client)]


def admit(request: Request, scope: str, why: str | None = None) -> Client:
    """The request's client, if it holds ``scope`` (401 or 403 otherwise); ``why`` says, in a
    refusal, who holds the scope."""
    client = _authenticated(request)
    if not client.has(scope):
        detail = f"this client lacks the '{scope}' scope" + (f": {why}" if why else "")
        raise Forbidden(detail, rule="scope", scope=scope)
    return client


def require(scope: str, why: str | None = None) -> object:
    """A dependency that admits only clients holding ``scope``. It authenticates itself rather
    than through ``current_client``: each dependency costs FastAPI bookkeeping on every request.
    A route's own dependency may call ``admit`` instead, declared ``Security(..., scopes=[scope])``."""

    async def _check(request: Request) -> Client:
        return admit(request, scope, why)

    return Security(_check, scopes=[scope])  # the scope is named in the OpenAPI document
