"""The JSON edge's one loose type.

A document parsed from JSON or built to be written as JSON (an OpenAPI or AsyncAPI document, a
JSON Schema, a token's claims, a key set) whose nested shape the code reads or fills by key: its
values are checked where they are used, not typed here. Everything past the edge is typed.
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
