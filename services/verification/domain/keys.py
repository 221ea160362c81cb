"""Which issuer keys a key document may speak for. Pure rules."""

from __future__ import annotations


def minted_by(kid: str, issuer: str) -> bool:
    """A registry mints its kids in its own namespace (``<division>-<time>-<random>``), as it mints
    its certificate numbers. A kid is bound to one key for ever, first come; without the namespace
    a jurisdiction could republish a kid another issuer had just minted, before this service
    fetched the minter's document, and every certificate under that new key would be answered
    not genuine, online and offline."""
    return kid.startswith(f"{issuer}-")


def speaks_for(kid: str, issuer: str, divisions: frozenset[str]) -> bool:
    """A key document speaks only for the divisions it is bound to, and only of kids they minted."""
    return issuer in divisions and minted_by(kid, issuer)
