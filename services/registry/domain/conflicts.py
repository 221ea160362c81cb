"""The counterpart's "same record, different fields" check, shared by every kind. Pure functions."""

from __future__ import annotations

import datetime as dt
from typing import Any


def plain(value: Any) -> Any:
    """A value as the feedback carries it: a date as ISO text."""
    return value.isoformat() if isinstance(value, dt.date) else value


def field_conflicts(
    ours: dict[str, Any], theirs: dict[str, Any], fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The fields on which our record and a counterpart's of the same thing disagree."""
    return [
        {"field": f, "ours": plain(ours.get(f)), "theirs": plain(theirs.get(f))}
        for f in fields
        if plain(ours.get(f)) != plain(theirs.get(f))
    ]
