"""A birth as the registry stores it (flat columns) and as ``birth.registered.v2`` carries it."""

from __future__ import annotations

from typing import Any

from shared.events import payloads as p

_FLAT = tuple(f for f in p.BirthRegisteredV2.model_fields if f != "birth_place")


def birth_payload(birth: dict[str, Any]) -> p.BirthRegisteredV2:
    """The v2 payload of a stored (or just registered) birth."""
    place = p.BirthPlace(
        division=birth["birth_division"],
        kind=birth.get("birth_place_kind"),
        institution=birth.get("birth_institution"),
    )
    return p.BirthRegisteredV2(**{k: birth.get(k) for k in _FLAT}, birth_place=place)


def birth_record(data: dict[str, Any]) -> dict[str, Any]:
    """The columns of a birth from v2 data (a counterpart's notification, upcast if it was v1)."""
    place = data["birth_place"]
    return {
        **{k: v for k, v in data.items() if k != "birth_place"},
        "birth_division": place["division"],
        "birth_place_kind": place.get("kind"),
        "birth_institution": place.get("institution"),
    }
