"""``Idempotency-Key`` on every POST: the first answer is stored with the effect, in one transaction.

The middleware opens the request's unit of work itself, so the business rows, the outbox rows
and the stored answer commit together; it hands the connection over (``hold_connection``) and the
routes' unit-of-work dependency (``shared.app.unit_of_work``) takes it (``held_connection``).
A retry with the same key and body gets the first answer byte for byte; the same key with
another body is a 422. Concurrent retries queue on an advisory lock for the key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import asyncpg
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import unit_of_work_on
from shared.errors import PROBLEM_BASE, PROBLEM_JSON, DomainError

MAX_KEY_LENGTH = 200
STORED_ERRORS = {409, 422}  # deterministic answers worth replaying; 401/403/429/5xx are not


HELD_CONNECTION = "idem_conn"  # the request's own key in scope["state"]: see held_connection


def hold_connection(scope: Scope, conn: asyncpg.Connection) -> None:
    """Hand the middleware's connection, in its open unit of work, to the request's routes."""
    scope.setdefault("state", {})[HELD_CONNECTION] = conn


def held_connection(scope: Scope) -> asyncpg.Connection | None:
    """The connection the middleware holds for this request (its unit of work is already open),
    or None when the request carries no Idempotency-Key: the route then opens its own."""
    state: dict[str, object] = scope.get("state", {})
    return cast("asyncpg.Connection | None", state.get(HELD_CONNECTION))


@dataclass(frozen=True)
class _Keyed:
    """A POST with a valid Idempotency-Key from an authenticated client."""

    client_id: str
    key: str
    request_hash: str
    body: bytes


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def content_type(self) -> str:
        return dict(self.headers).get(b"content-type", b"application/json").decode()


class _Unkept(Exception):
    """Roll the request's unit of work back and answer with ``answer`` (``store``: keep it in a
    transaction of its own, for a deterministic error answer worth replaying)."""

    def __init__(self, answer: _Answer, *, store: bool) -> None:
        super().__init__(answer.status)
        self.answer = answer
        self.store = store


def _problem(status: int, detail: str, rule: str) -> _Answer:
    body = {
        "type": PROBLEM_BASE + "invalid-input",
        "title": "The request breaks a validation rule",
        "status": status,
        "detail": detail,
        "errors": [{"field": "Idempotency-Key", "rule": rule, "message": detail}],
    }
    return _plain(status, orjson.dumps(body), PROBLEM_JSON)


def _plain(status: int, body: bytes, content_type: str, *, replayed: bool = False) -> _Answer:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    return _Answer(status, headers, body)


PoolGetter = Callable[[Scope], asyncpg.Pool]


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, pool_getter: PoolGetter):
        self.app = app
        self.pool_getter = pool_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _client_and_key(scope)
        if found is None:  # most requests: pass through without authenticating twice
            await self.app(scope, receive, send)
            return
        client_id, key = found
        if len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.strip():
            detail = f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters"
            await _send(send, _problem(422, detail, "idempotency-key-format"))
            return
        body = await _read_body(receive)
        request_hash = hashlib.sha256(scope["path"].encode() + b"\0" + body).hexdigest()
        answer = await self._answer_once(scope, _Keyed(client_id, key, request_hash, body))
        await _send(send, answer)

    async def _answer_once(self, scope: Scope, request: _Keyed) -> _Answer:
        """The app's answer with its effect, committed together with the stored answer (status
        below 400); a replay of the first answer; or an error answer after a rollback."""
        async with self.pool_getter(scope).acquire() as conn:
            try:
                async with unit_of_work_on(conn) as tx:
                    return await self._first_answer(scope, tx, request)
            except _Unkept as e:
                unkept = e
            if unkept.store:
                async with unit_of_work_on(conn, wake=False):
                    await _store(conn, request, unkept.answer)
            return unkept.answer

    async def _first_answer(self, scope: Scope, conn: asyncpg.Connection, request: _Keyed) -> _Answer:
        """Inside the request's unit of work: the stored answer if the key was used (``_Unkept``),
        else the app's, stored with its effect; an error answer rolls the effect back (``_Unkept``)."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{request.client_id}:{request.key}"
        )
        row = await conn.fetchrow(
            "SELECT request_hash, status_code, body, content_type FROM idempotency_keys"
            " WHERE client_id = $1 AND key = $2",
            request.client_id,
            request.key,
        )
        if row is not None:
            raise _Unkept(_replay(row, request.request_hash), store=False)
        hold_connection(scope, conn)
        answer = await _capture(self.app, scope, request.body)
        if answer.status >= 400:
            raise _Unkept(answer, store=answer.status in STORED_ERRORS)
        await _store(conn, request, answer)
        return answer


def _client_and_key(scope: Scope) -> tuple[str, str] | None:
    """The authenticated client and the raw key of an idempotent POST, or None to pass it on."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    raw_key = next((v for k, v in scope["headers"] if k == b"idempotency-key"), None)
    if raw_key is None:
        return None
    client_id = _client_id(scope, dict(scope["headers"]).get(b"authorization", b""))
    return None if client_id is None else (client_id, raw_key.decode("latin-1"))


def _replay(row: asyncpg.Record, request_hash: str) -> _Answer:
    """The first answer byte for byte, or a 422 when the key came with another request."""
    if row["request_hash"] != request_hash:
        detail = "Idempotency-Key was already used with a different request"
        return _problem(422, detail, "idempotency-key-reuse")
    return _plain(row["status_code"], bytes(row["body"]), row["content_type"], replayed=True)


def _client_id(scope: Scope, authorization: bytes) -> str | None:
    """The authenticated client, or None: a stored answer is only ever replayed to its own client.

    Knowing a client id and a key is not enough; without a valid credential the request goes
    on to the app, whose auth dependency answers 401.
    """
    clients = getattr(getattr(scope.get("app"), "state", None), "clients", None)
    if clients is None:
        return None
    try:
        return str(clients.authenticate(authorization.decode("latin-1")).client_id)
    except DomainError:
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _capture(app: ASGIApp, scope: Scope, body: bytes) -> _Answer:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return _Answer(status, headers, b"".join(chunks))


async def _store(conn: asyncpg.Connection, request: _Keyed, answer: _Answer) -> None:
    await conn.execute(
        """INSERT INTO idempotency_keys (client_id, key, request_hash, status_code, body, content_type)
           VALUES ($1,$2,$3,$4,$5,$6)""",
        request.client_id,
        request.key,
        request.request_hash,
        answer.status,
        answer.body,
        answer.content_type,
    )


async def _send(send: Send, answer: _Answer) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body})
