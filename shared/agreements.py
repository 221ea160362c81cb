"""Inter-jurisdiction agreements (双向协议): authoritative, validated data (DESIGN.md section 6).

The agreements file is a YAML list; each entry joins two jurisdictions (a 6-digit code, or ``*``
for any):

    - division_a: "320412"
      division_b: "440703"
      event_types: [person.registered.v1, birth.registered.v1]   # catalog types; "*" = all
      deadline_seconds: 259200                                   # feedback deadline (optional)
      visible_fields:                                            # per direction: the receiver...
        "440703":                                                # ...sees only these fields
          birth.registered.v1: [birth_id, medical_certificate_number, child_name, ...]

The file is the whole truth: what it does not list does not flow. Every name is checked when a
service starts, and a file naming an unknown division, event type or field, or hiding a field the
receiver needs (one not ``withholdable`` in the payload's contract), is refused with a message
naming it: a service does not start on an agreement it would misapply.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.events.catalog import CATALOG
from shared.events.restriction import check_withheld
from shared.events.upcasting import current_field, current_type
from shared.identity import check_division

ANY = "*"
Fields = Mapping[str, Mapping[str, Iterable[str]]]  # receiving division -> event type -> visible fields


class AgreementError(ValueError):
    """The agreements file cannot be used; the message names the entry and the offending name."""


def exchanged_types() -> tuple[str, ...]:
    """The event types that flow between jurisdictions under agreements: the vital events and the
    certificates' lifecycle (not the exchange's own notifications and feedback)."""
    return tuple(t for t, spec in CATALOG.items() if spec.topic.startswith(("vital.", "certificate.")))


def _event_type(name: str) -> str:
    if name == ANY or name in exchanged_types():
        return name
    if name in CATALOG:
        raise ValueError(f"event type {name!r} is not exchanged between jurisdictions")
    raise ValueError(
        f"unknown event type {name!r} (a type of the catalog, e.g. birth.registered.v1, not a topic)"
    )


class Agreement(BaseModel):
    """One agreement between two jurisdictions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    division_a: str
    division_b: str
    event_types: tuple[str, ...] = Field(default=(ANY,), min_length=1)
    deadline_seconds: float | None = Field(default=None, gt=0)
    visible_fields: dict[str, dict[str, tuple[str, ...]]] = Field(default_factory=dict)

    @field_validator("division_a", "division_b", mode="before")
    @classmethod
    def _division(cls, value: object) -> str:
        code = str(value)
        return code if code == ANY else check_division(code)

    @field_validator("visible_fields", mode="before")
    @classmethod
    def _per_direction(cls, value: object) -> object:
        if isinstance(value, dict):
            for key, inner in value.items():
                if not isinstance(inner, dict):
                    raise ValueError(
                        f"visible_fields is keyed by the receiving division, then the event type "
                        f"(e.g. {{'440703': {{'birth.registered.v1': [...]}}}}); {key!r} holds no such map"
                    )
        return value

    @field_validator("event_types")
    @classmethod
    def _event_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_event_type(t) for t in value)

    @model_validator(mode="after")
    def _restrictions(self) -> Agreement:
        for receiver, per_type in self.visible_fields.items():
            if receiver not in (self.division_a, self.division_b):
                raise ValueError(
                    f"visible_fields key {receiver!r} is not a division of this agreement: restrictions "
                    "are per direction, keyed by the receiving division"
                )
            for event_type, fields in per_type.items():
                if _event_type(event_type) == ANY:
                    raise ValueError("visible_fields names event types one by one, not '*'")
                if not self.covers(event_type):
                    raise ValueError(
                        f"visible_fields names {event_type}, which the agreement does not let flow"
                    )
                payload = CATALOG[event_type].payload
                unknown = [f for f in fields if f not in payload.model_fields]
                if unknown:
                    raise ValueError(f"unknown field {unknown[0]!r} of {event_type}")
                current = current_type(event_type)
                try:
                    check_withheld(payload, set(payload.model_fields) - set(fields))
                    if current != event_type:  # the restriction as it applies to the current version
                        check_withheld(CATALOG[current].payload, self.withheld(receiver, current))
                except ValueError as e:
                    raise ValueError(f"{event_type} for {receiver}: {e}") from None
        return self

    @property
    def pair(self) -> tuple[str, str]:
        a, b = sorted((self.division_a, self.division_b))
        return a, b

    def withheld(self, receiver: str, event_type: str) -> frozenset[str]:
        """The fields of ``event_type`` this agreement withholds from ``receiver``."""
        return withheld(self.visible_fields, (self.division_a, self.division_b), receiver, event_type)

    def covers(self, event_type: str) -> bool:
        """Whether this agreement lets the event type flow (both ways; any version of it)."""
        return covers(self.event_types, event_type)

    def row(self) -> dict[str, object]:
        """The agreement as the exchange's table stores it."""
        a, b = self.pair
        return {
            "division_a": a,
            "division_b": b,
            "event_types": list(self.event_types),
            "deadline_seconds": self.deadline_seconds,
            "visible_fields": {r: {t: list(f) for t, f in m.items()} for r, m in self.visible_fields.items()},
        }


def covers(event_types: Iterable[str], event_type: str) -> bool:
    """Whether a list of agreed event types lets this type flow. An agreement naming an older
    version covers the version it is upcast to: producers switching to a v2 must neither stop an
    agreed flow nor open one that was not agreed."""
    current = current_type(event_type)
    return any(t == ANY or current_type(t) == current for t in event_types)


def withheld(
    visible_fields: Fields | None, sides: tuple[str, str], receiver: str, event_type: str
) -> frozenset[str]:
    """The fields of ``event_type`` that the agreement between ``sides`` withholds from ``receiver``
    (empty: all visible). A receiver matched by a ``*`` side reads the restrictions keyed ``*``.

    A restriction written for another version of the type still holds: its field names are
    compared where the current version keeps them (``shared.events.upcasting``), so a producer
    switching to a v2 neither lifts a restriction nor breaks it."""
    key = receiver if receiver in sides else ANY
    current = current_type(event_type)
    seen: set[str] | None = None
    for listed, fields in ((visible_fields or {}).get(key) or {}).items():
        if listed in CATALOG and current_type(listed) == current:
            mapped = {current_field(listed, f) for f in fields}
            seen = mapped if seen is None else seen & mapped
    if seen is None or event_type not in CATALOG:
        return frozenset()
    own = CATALOG[event_type].payload.model_fields
    return frozenset(f for f in own if current_field(event_type, f) not in seen)


def parse(entries: object, origin: str = "agreements") -> list[Agreement]:
    """Validated agreements from the file's content; AgreementError names what is wrong and where."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise AgreementError(f"{origin}: a YAML list of agreements is expected")
    out: list[Agreement] = []
    seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(entries, start=1):
        where = f"{origin}, agreement {i}"
        if isinstance(entry, dict):
            where += f" ({entry.get('division_a')} <-> {entry.get('division_b')})"
        try:
            agreement = Agreement.model_validate(entry)
        except ValidationError as e:
            first = e.errors()[0]
            at = ".".join(str(x) for x in first["loc"])
            msg = str(first["msg"]).removeprefix("Value error, ")
            raise AgreementError(f"{where}: {msg}" + (f" (at {at})" if at else "")) from None
        if agreement.pair in seen:
            raise AgreementError(f"{where}: the pair is already agreed in agreement {seen[agreement.pair]}")
        seen[agreement.pair] = i
        out.append(agreement)
    return out


@functools.cache
def load(path: str | None, environment: str) -> tuple[Agreement, ...]:
    """The agreements a service runs under: the file's, or without one one all-permitting agreement
    outside production (production exchanges nothing without an agreement)."""
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise AgreementError(f"agreements file {path}: {e.strerror}") from None
        return tuple(parse(yaml.safe_load(text), f"agreements file {path}"))
    return () if environment == "production" else (Agreement(division_a=ANY, division_b=ANY),)


def between(agreements: Iterable[Agreement], a: str, b: str) -> Agreement | None:
    """The agreement joining two jurisdictions, the most specific first ('*' matches any)."""
    matching = [
        x
        for x in agreements
        if (x.division_a in (a, ANY) and x.division_b in (b, ANY))
        or (x.division_a in (b, ANY) and x.division_b in (a, ANY))
    ]
    return min(matching, key=lambda x: (x.division_a == ANY) + (x.division_b == ANY), default=None)
