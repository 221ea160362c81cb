"""``Idempotency-Key`` on every POST: the first answer is stored with the effect, in one transaction.

The middleware opens the request's transaction itself, so the business rows, the outbox rows
and the stored answer commit together; the unit-of-work dependency reuses that connection.
A retry with the same key and body gets the first answer byte for byte; the same key with
another body is a 422. Concurrent retries queue on an advisory lock for the key.
"""

from __future__ import annotations

import hashlib

import asyncpg
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import is_unavailable
from shared.errors import PROBLEM_BASE, PROBLEM_JSON, DomainError
from shared.outbox import wake_relay

MAX_KEY_LENGTH = 200
STORED_ERRORS = {409, 422}  # deterministic answers worth replaying; 401/403/429/5xx are not


def _problem(status: int, detail: str, rule: str) -> tuple[int, bytes]:
    import orjson

    body = {
        "type": PROBLEM_BASE + "invalid-input",
        "title": "The request breaks a validation rule",
        "status": status,
        "detail": detail,
        "errors": [{"field": "Idempotency-Key", "rule": rule, "message": detail}],
    }
    return status, orjson.dumps(body)


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, pool_getter: object):
        self.app = app
        self.pool_getter = pool_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw_key = next((v for k, v in scope["headers"] if k == b"idempotency-key"), None)
        if raw_key is None:  # most requests: pass through without authenticating twice
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        client_id = _client_id(scope, headers.get(b"authorization", b""))
        if client_id is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.strip():
            await _send(
                send,
                *_problem(
                    422,
                    f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
                    "idempotency-key-format",
                ),
                PROBLEM_JSON,
            )
            return
        body = await _read_body(receive)
        request_hash = hashlib.sha256(scope["path"].encode() + b"\0" + body).hexdigest()
        pool: asyncpg.Pool = self.pool_getter(scope)  # type: ignore[operator]
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            finished = False
            try:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{client_id}:{key}"
                )
                row = await conn.fetchrow(
                    "SELECT request_hash, status_code, body, content_type FROM idempotency_keys"
                    " WHERE client_id = $1 AND key = $2",
                    client_id,
                    key,
                )
                if row is not None:
                    await tx.rollback()
                    finished = True
                    if row["request_hash"] != request_hash:
                        await _send(
                            send,
                            *_problem(
                                422,
                                "Idempotency-Key was already used with a different request",
                                "idempotency-key-reuse",
                            ),
                            PROBLEM_JSON,
                        )
                        return
                    await _send(
                        send, row["status_code"], bytes(row["body"]), row["content_type"], replayed=True
                    )
                    return
                scope.setdefault("state", {})["idem_conn"] = conn
                status, resp_headers, resp_body = await _capture(self.app, scope, body)
                content_type = dict(resp_headers).get(b"content-type", b"application/json").decode()
                if status < 400:
                    await _store(conn, client_id, key, request_hash, status, resp_body, content_type)
                    await tx.commit()
                    finished = True
                    await wake_relay(conn)
                else:
                    await tx.rollback()
                    finished = True
                    if status in STORED_ERRORS:
                        async with conn.transaction():
                            await _store(conn, client_id, key, request_hash, status, resp_body, content_type)
            except BaseException as e:
                if not finished:
                    try:
                        await tx.rollback()
                    except Exception:
                        conn.terminate()  # a broken connection must not go back to the pool
                if isinstance(e, Exception) and is_unavailable(e):
                    conn.terminate()
                raise
        await send({"type": "http.response.start", "status": status, "headers": resp_headers})
        await send({"type": "http.response.body", "body": resp_body})


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


async def _capture(app: ASGIApp, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
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
    return status, headers, b"".join(chunks)


async def _store(
    conn: asyncpg.Connection,
    client_id: str,
    key: str,
    request_hash: str,
    status: int,
    body: bytes,
    content_type: str,
) -> None:
    await conn.execute(
        """INSERT INTO idempotency_keys (client_id, key, request_hash, status_code, body, content_type)
           VALUES ($1,$2,$3,$4,$5,$6)""",
        client_id,
        key,
        request_hash,
        status,
        body,
        content_type,
    )


async def _send(send: Send, status: int, body: bytes, content_type: str, replayed: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
