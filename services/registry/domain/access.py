"""Who may read what of a person's record. Pure functions: DESIGN.md section 8."""

from __future__ import annotations

from collections.abc import Iterable

# What each purpose discloses (field-level per purpose).
PURPOSE_SECTIONS: dict[str, frozenset[str]] = {
    "registration": frozenset({"migrations", "marriages", "births", "pregnancies", "certificates"}),
    "maternal_care": frozenset({"births", "pregnancies"}),
    "birth_registration": frozenset({"marriages", "births", "pregnancies"}),
    "certificate_issuance": frozenset({"marriages", "births", "certificates"}),
    "social_services": frozenset({"migrations", "births"}),
}


def shares_with(reader: str, hukou: str, residence: str, moves: Iterable[tuple[str, str]]) -> bool:
    """A counterpart jurisdiction may read a person it has a stake in: origin, destination, or a
    place the person moved from or to."""
    places = {hukou, residence}
    for frm, to in moves:
        places |= {frm, to}
    return reader in places


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
