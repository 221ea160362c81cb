"""Who may read what of a person's record. Pure functions: DESIGN.md section 8."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shared.errors import Forbidden

# What each purpose discloses (field-level per purpose).
PURPOSE_SECTIONS: dict[str, frozenset[str]] = {
    "registration": frozenset({"migrations", "marriages", "births", "pregnancies", "certificates"}),
    "maternal_care": frozenset({"births", "pregnancies"}),
    "birth_registration": frozenset({"marriages", "births", "pregnancies"}),
    "certificate_issuance": frozenset({"marriages", "births", "certificates"}),
    "social_services": frozenset({"migrations", "births"}),
}


# The events that carry each section of a person's record to a counterpart. A counterpart reads
# a section only if its agreement lets those events flow to it, and sees of each record what the
# agreement lets it see of those events: a read discloses no more than the notifications would.
# Sections without an entry (certificates: the issuer's register) need the agreement only.
SECTION_EVENTS: dict[str, tuple[str, ...]] = {
    "migrations": ("migration.departed.v1", "migration.arrived.v1", "migration.returned.v1"),
    "marriages": ("marriage.registered.v1",),
    "births": ("birth.registered.v1",),
    "pregnancies": ("pregnancy.registered.v1",),
}


def shares_with(reader: str, hukou: str, residence: str) -> bool:
    """A counterpart jurisdiction may read a person it has a stake in now: her current origin or
    destination. A place she moved on from (A -> B -> C: B) or returned from is no longer told of
    her events, and reads nothing new of her either."""
    return reader in (hukou, residence)


def agreed_sections(sections: Iterable[str], covers: Callable[[str], bool]) -> set[str]:
    """The sections whose events the agreement lets flow (``covers``: event type -> bool)."""
    return {s for s in sections if all(covers(t) for t in SECTION_EVENTS.get(s, ()))}


def without_withheld(records: list[dict[str, Any]], withheld: Iterable[str]) -> list[dict[str, Any]]:
    """The section's records with the fields the agreement withholds from the reader emptied."""
    gone = frozenset(withheld)
    return [{k: (None if k in gone else v) for k, v in r.items()} for r in records]


def may_see_pregnancies(
    reader: str | None, has_scope: bool, purpose: str, hukou: str, residence: str
) -> bool:
    """Pregnancy data: only the person's own origin and destination registries, for care and registration."""
    return (
        has_scope
        and reader is not None
        and reader in (hukou, residence)
        and "pregnancies" in PURPOSE_SECTIONS.get(purpose, frozenset())
    )


def told_of_registration(here: str, hukou: str, residence: str) -> list[str]:
    """Who else is given a pregnancy registered ``here``: the mother's origin and residence of the
    moment (the exchange sends it to them), this registry aside."""
    return sorted({hukou, residence} - {here})


def held_by(reader: str | None, here: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of the pregnancy records kept at ``here``, those ``reader`` holds too, without who holds
    them: all of them for ``here`` itself, for a counterpart those it was given (told of the
    registration, ``shared_with``) or sent (a copy's ``source_division``). Pregnancy data is shared
    between her two registries of the time it was registered (DESIGN.md section 8); a place she
    moved to later was never given it, and reading her record here discloses no more than the
    notifications did (``may_see_pregnancies`` still asks that the reader be one of her two now)."""
    return [
        {k: v for k, v in r.items() if k != "shared_with"}
        for r in records
        if reader == here or reader == r["source_division"] or reader in (r["shared_with"] or ())
    ]


def ensure_served(jurisdiction: str | None, served: frozenset[str]) -> str:
    """The jurisdiction a writing client records for; it must be one this registry serves."""
    if jurisdiction is None or jurisdiction not in served:
        raise Forbidden(
            "this registry does not keep the records of the client's jurisdiction", rule="jurisdiction"
        )
    return jurisdiction
