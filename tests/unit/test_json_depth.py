"""``json_depth`` (the request limit's nesting bound) against the nesting of the value itself, and
against a byte-by-byte reading of the same rule on any prefix, since hostile bodies are cut off."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from shared.limits import json_depth

# Strings made of what confuses a bracket counter: brackets, quotes, backslashes.
_TEXT = st.text(alphabet='[]{}"\\ ax\n', max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=30,
)


def nesting(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


def by_byte(body: bytes) -> int:
    """The rule read one byte at a time: a quote opens or closes a string, a backslash in a
    string escapes the next byte, brackets outside strings nest."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


@given(_JSON)
def test_the_depth_of_a_document_is_the_nesting_of_its_value(value: Any) -> None:
    assert json_depth(orjson.dumps(value)) == nesting(value)


@given(_JSON, st.data())
def test_a_cut_off_document_reads_as_byte_by_byte(value: Any, data: st.DataObject) -> None:
    body = orjson.dumps(value)
    cut = data.draw(st.integers(0, len(body)))
    assert json_depth(body[:cut]) == by_byte(body[:cut])


def test_brackets_in_strings_and_after_an_unterminated_quote_do_not_count() -> None:
    assert json_depth(b'{"a": "[[[[[[[[", "b": [1, {"c": "\\"]]]"}]}') == 3
    assert json_depth(b'["a\\\\", [[]]]') == 3  # an escaped backslash does not escape the quote
    assert json_depth(b'[["open [[[[') == 2
    assert json_depth(b"]]][[") == by_byte(b"]]][[")
