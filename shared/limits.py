"""Refuse hostile requests at the door, before any parser or transaction sees them.

A pure ASGI middleware: request bodies are read up to ``max_body`` bytes (so memory stays
bounded whatever the client sends, chunked or not), then checked for a JSON content type,
valid UTF-8, a sane nesting depth and text PostgreSQL can store (``shared.inputs``), and
replayed to the app; path and query parameters get the same text check. Each refusal is a
problem+json 4xx naming the field and the rule, so a client can tell a bad request from a
bad server.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection

import orjson
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import inputs
from shared.errors import PROBLEM_BASE, PROBLEM_JSON, InvalidInput

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
_BODY_METHODS = {"POST", "PUT", "PATCH"}


class BodyLimitExceeded(Exception):
    """The client sent more than the limit; the rest of the body is never read."""


def problem(status: int, title: str, detail: str, field: str, rule: str) -> bytes:
    return orjson.dumps(
        {
            "type": PROBLEM_BASE + rule,
            "title": title,
            "status": status,
            "detail": detail,
            "errors": [{"field": field, "rule": rule, "message": detail}],
        }
    )


def _is_json(content_type: str) -> bool:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return False
    charset = next(
        (p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";") if "charset" in p.lower()),
        "utf-8",
    )
    return charset in ("utf-8", "utf8")


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")
_STEP = {0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}  # [ { open, ] } close


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects, ignoring brackets inside strings (and after an
    unterminated quote: the rest is that string).

    Escaped backslashes, then escaped quotes, are cut out, so every quote left opens or closes a
    string and every other piece between quotes is outside one; then all but the brackets is cut.
    Each step is a linear pass in C (no pattern that could backtrack on a hostile body), so Python
    steps only through the brackets: a thousand events are a few thousand steps, not 200,000."""
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets), initial=0))


class RequestLimitsMiddleware:
    """413 for bodies over the limit, 415 for non-JSON bodies, 400 for invalid UTF-8 or deep nesting.

    ``batch_paths`` are routes that check a body's ``items`` one by one: text they cannot store in
    an item is left to the route to refuse that item (``inputs.UNSTORABLE_ITEMS`` in the request's
    state says which), not the whole batch."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int = MAX_BODY_BYTES,
        max_depth: int = MAX_JSON_DEPTH,
        batch_paths: Collection[str] = (),
    ):
        self.app = app
        self.max_body = max_body
        self.max_depth = max_depth
        self.batch_paths = frozenset(batch_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = _unstorable_parameter(scope)
        if refusal is not None:
            await self._refuse(send, *refusal)
            return
        if scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._refuse(send, *self._too_large())
            return
        try:
            body = await self._read(receive)
        except BodyLimitExceeded:
            await self._refuse(send, *self._too_large())
            return
        if body:
            refusal = self._check(headers.get(b"content-type", b"").decode("latin-1"), body, scope)
            if refusal is not None:
                await self._refuse(send, *refusal)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyLimitExceeded
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    def _too_large(self) -> tuple[int, bytes]:
        return 413, problem(
            413,
            "The request body is too large",
            f"request bodies are limited to {self.max_body} bytes",
            "body",
            "max-body-size",
        )

    def _check(self, content_type: str, body: bytes, scope: Scope) -> tuple[int, bytes] | None:
        if not _is_json(content_type):
            return 415, problem(
                415,
                "Unsupported media type",
                "send the request body as application/json in UTF-8",
                "Content-Type",
                "media-type",
            )
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, problem(
                400, "The request body is not UTF-8", "the body must be valid UTF-8", "body", "utf-8"
            )
        # Counting brackets is a C-speed bound on depth; only bodies that could be deep get scanned.
        if body.count(b"[") + body.count(b"{") > self.max_depth and json_depth(body) > self.max_depth:
            return 400, problem(
                400,
                "The request body is nested too deeply",
                f"JSON may nest at most {self.max_depth} levels",
                "body",
                "max-json-depth",
            )
        if scope["path"] in self.batch_paths:
            found, per_item = inputs.unstorable_in_batch(body)
            if per_item:
                scope.setdefault("state", {})[inputs.UNSTORABLE_ITEMS] = per_item
        else:
            found = inputs.unstorable_in_json(body)
        if found is not None:
            return _unstorable(*found)
        return None

    async def _refuse(self, send: Send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def unstorable_refusal(field: str, rule: str) -> InvalidInput:
    """The refusal of text PostgreSQL cannot store: of a request, or of one item of a batch."""
    return InvalidInput(inputs.message(rule), field=field, rule=rule)


def _unstorable(field: str, rule: str) -> tuple[int, bytes]:
    return 422, orjson.dumps(unstorable_refusal(field, rule).body())


def _unstorable_parameter(scope: Scope) -> tuple[int, bytes] | None:
    """A query or path parameter holding text PostgreSQL cannot store (two byte scans normally)."""
    found = inputs.unstorable_in_query(scope.get("query_string", b""))
    if found is None and "\x00" in scope["path"]:
        found = _path_parameter(scope) or ("path", inputs.NUL_RULE)
    return _unstorable(*found) if found else None


def _path_parameter(scope: Scope) -> tuple[str, str] | None:
    """Name the path parameter by matching the app's routes (only for a path that holds a NUL)."""
    app = scope.get("app")
    for route in iter_route_contexts(getattr(getattr(app, "router", None), "routes", [])):
        if route.path is None:
            continue
        regex, _, _ = compile_path(route.path)
        match = regex.match(scope["path"])
        if match is not None:
            return inputs.unstorable_in_params(match.groupdict())
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # after the body: wait for the disconnect like the server would
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
