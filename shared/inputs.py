"""Bounds every request value keeps before it reaches PostgreSQL, orjson or a log line.

PostgreSQL stores 64-bit integers and text without NUL characters; orjson writes integers
of at most 64 bits and only valid UTF-8 (no lone surrogates). A value outside those bounds
is the caller's mistake, so it is refused at the edge with a 422 naming the field, never
discovered by a driver halfway through a transaction:

* integers: request models use ``Int64`` (any stored integer) or ``RowId`` (a BIGINT key),
  which the OpenAPI documents as bounded;
* text: ``RequestLimitsMiddleware`` refuses a NUL character or a lone surrogate in any
  JSON string, object key, query parameter or path segment (``unstorable_*`` below find
  the field; they only parse when a cheap byte scan says there might be one). A batch's
  items are the exception: one item's text is that item's refusal, not the batch's
  (``unstorable_in_batch``), so the batch route answers it in the item's result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import parse_qsl

from pydantic import AfterValidator, Field, WithJsonSchema

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Usable as body fields and as FastAPI path and query parameter types alike.
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
RowId = Annotated[int, Field(ge=1, le=INT64_MAX)]  # a BIGINT key
MAX_FIELD_VALUE = 500


def check_field_value(value: str | int | None) -> str | int | None:
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("an integer must fit in 64 bits (-2^63 to 2^63-1)")
    if isinstance(value, str) and len(value) > MAX_FIELD_VALUE:
        raise ValueError(f"a text value has at most {MAX_FIELD_VALUE} characters")
    return value


# The value of one field of a record (a name, a date, a code, a number), as corrections and
# conflicts carry them. Checked after the union is resolved, so an error names the field itself
# (bounds inside the union's members would name the member: "theirs.constrained-int").
FieldName = Annotated[str, Field(min_length=1, max_length=64)]
FieldValue = Annotated[
    str | int | None,
    AfterValidator(check_field_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_FIELD_VALUE},
                {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
                {"type": "null"},
            ]
        }
    ),
]

# What a JSON body needs to carry a NUL or a lone surrogate: the escape (raw control bytes
# and raw surrogates are not valid JSON or UTF-8 and are refused by the parsers already).
_SUSPECT_BODY = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
NUL_RULE = "no-nul-character"
SURROGATE_RULE = "no-lone-surrogate"


def unstorable(text: str) -> str | None:
    """The rule ``text`` breaks (a NUL character or a lone surrogate), or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return NUL_RULE if found.group() == "\x00" else SURROGATE_RULE


def message(rule: str) -> str:
    if rule == NUL_RULE:
        return "text may not contain the NUL character (U+0000)"
    return "text may not contain a lone UTF-16 surrogate (U+D800-U+DFFF)"


def _walk(value: object, path: tuple[str, ...]) -> tuple[str, str] | None:
    if isinstance(value, str):
        rule = unstorable(value)
        return (".".join(path) or "body", rule) if rule else None
    if isinstance(value, dict):
        for key, item in value.items():
            rule = unstorable(key)
            if rule:
                return ".".join((*path, "(key)")) if path else "(key)", rule
            found = _walk(item, (*path, key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _walk(item, (*path, str(i)))
            if found:
                return found
    return None


def unstorable_in_json(body: bytes) -> tuple[str, str] | None:
    """(field path, rule) of the first JSON string or key that cannot be stored, or None.

    A body that is not JSON is left to the route's parser, which answers its own 422."""
    if _SUSPECT_BODY.search(body) is None:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return _walk(document, ())


# What a batch route checks item by item itself: an item's kind, target and body; and the key of
# the request state where the middleware leaves, by item index, the text it found there.
BATCH_ITEM_FIELDS = frozenset({"kind", "target", "body"})
UNSTORABLE_ITEMS = "unstorable_items"


def unstorable_in_batch(body: bytes) -> tuple[tuple[str, str] | None, dict[int, tuple[str, str]]]:
    """For a ``{"items": [...]}`` body checked item by item: the first unstorable text outside the
    items' kind, target and body (the whole batch's refusal, as ``unstorable_in_json``), and for
    each item holding some, (field, rule) named as the item's own refusals name them: ``kind``,
    ``target``, or the field's path in the body."""
    if _SUSPECT_BODY.search(body) is None:
        return None, {}
    try:
        document = json.loads(body)
    except ValueError:
        return None, {}
    if not (isinstance(document, dict) and isinstance(document.get("items"), list)):
        return _walk(document, ()), {}
    outside = _walk({k: v for k, v in document.items() if k != "items"}, ())
    per_item: dict[int, tuple[str, str]] = {}
    for i, item in enumerate(document["items"]):
        if outside is not None:
            break
        if not isinstance(item, dict):
            outside = _walk(item, ("items", str(i)))
            continue
        own = {k: None if k in BATCH_ITEM_FIELDS else v for k, v in item.items()}
        outside = _walk(own, ("items", str(i)))
        found = (
            _walk(item.get("kind"), ("kind",))
            or _walk(item.get("target"), ("target",))
            or _walk(item.get("body"), ())
        )
        if found is not None:
            per_item[i] = found
    return outside, per_item


def unstorable_in_query(query_string: bytes) -> tuple[str, str] | None:
    """(parameter name, rule) of the first query parameter that cannot be stored, or None."""
    # Percent-decoding replaces invalid UTF-8, so only an escaped NUL can get through.
    if b"%00" not in query_string:
        return None
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        rule = unstorable(name) or unstorable(value)
        if rule:
            return name, rule
    return None


def unstorable_in_params(params: Mapping[str, object]) -> tuple[str, str] | None:
    """(name, rule) of the first path parameter that cannot be stored, or None."""
    for name, value in params.items():
        rule = unstorable(value) if isinstance(value, str) else None
        if rule:
            return name, rule
    return None
