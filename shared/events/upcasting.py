"""Upcasters: an older payload version turned into the current one, so consumers apply one shape.

A breaking change to a payload is a new type (``birth.registered.v2``); producers switch to it,
and during the transition consumers meet both: events of producers not yet upgraded, events
replayed from old logs, notifications still in flight. Each upcaster turns the data of one
version into the next; chains run until the current version.

Upcasting happens after the signature check and never changes what was signed: a signature
covers the envelope's bytes as received (``shared.events.signature``), and consumers verify
those bytes, then apply the upcast model. The dead letter, the inbox and the audit keep the
original bytes and id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.jsontypes import JsonObject

Data = JsonObject  # an event's data as it travels: JSON


@dataclass(frozen=True)
class Upcaster:
    """Turns ``old`` data into ``new`` data; ``renamed`` maps a v(n) field to where v(n+1) keeps it."""

    old: str
    new: str
    data: Callable[[Data], Data]
    renamed: dict[str, str]


def _birth_v1_to_v2(d: Data) -> Data:
    """v1's ``birth_division`` becomes the division of a ``birth_place`` whose kind is unknown:
    v1 never recorded it, and guessing one would skew the hospital-delivery rate."""
    out = {k: v for k, v in d.items() if k != "birth_division"}
    out["birth_place"] = {"division": d.get("birth_division"), "kind": None, "institution": None}
    return out


UPCASTERS: dict[str, Upcaster] = {
    u.old: u
    for u in (
        Upcaster(
            "birth.registered.v1",
            "birth.registered.v2",
            _birth_v1_to_v2,
            renamed={"birth_division": "birth_place"},
        ),
    )
}


def current_type(event_type: str) -> str:
    """The type an event of ``event_type`` is applied as: the end of its upcaster chain."""
    while event_type in UPCASTERS:
        event_type = UPCASTERS[event_type].new
    return event_type


def upcast_data(event_type: str, data: Data) -> tuple[str, Data]:
    """The current type and its data, from data of ``event_type`` (unchanged if already current)."""
    while event_type in UPCASTERS:
        step = UPCASTERS[event_type]
        event_type, data = step.new, step.data(data)
    return event_type, data


def current_field(event_type: str, field: str) -> str:
    """Where the current version keeps a field named in an older one (agreements name fields)."""
    while event_type in UPCASTERS:
        step = UPCASTERS[event_type]
        event_type, field = step.new, step.renamed.get(field, field)
    return field
