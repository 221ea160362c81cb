"""The IETF Token Status List (draft-ietf-oauth-status-list): the list's bytes and its claims. Pure.

Why this one and not the W3C Bitstring Status List secured as VC-JOSE-COSE: our certificates
are already compact JWS (EdDSA) in a QR code, and the Token Status List is built for exactly
that: a referenced token carries ``"status": {"status_list": {"idx": n, "uri": ...}}`` (a few
dozen bytes in the QR), the list is a plain JWT (``typ: statuslist+jwt``) with no JSON-LD
context to resolve offline, and the EUDI-style wallets and verifiers read it. The W3C
credential stays in the JSON form served by default during the transition.

Bit order (section 4.1 of the draft): status ``idx`` is bit ``idx % 8`` of byte ``idx // 8``,
counting from the least significant bit, the opposite of the W3C bitstring. The byte array is
DEFLATE-compressed with the ZLIB format and base64url-encoded without padding.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable
from typing import Any

MEDIA_TYPE = "application/statuslist+jwt"
JWT_TYP = "statuslist+jwt"
# As many entries as the W3C list (16 KiB of bits), so a fetch does not tell which one is asked.
MIN_ENTRIES = 131_072
VALID, INVALID = 0, 1  # the draft's status values for bits = 1


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(revoked: Iterable[int], min_entries: int = MIN_ENTRIES) -> str:
    """``lst``: one bit per status index, set (INVALID) where revoked."""
    indices = list(revoked)
    size = max(min_entries, max(indices, default=-1) + 1)
    bits = bytearray((size + 7) // 8)
    for i in indices:
        if i < 0:
            raise ValueError("status indices are not negative")
        bits[i // 8] |= 1 << (i % 8)
    return _b64u(zlib.compress(bytes(bits), 9))


def decode(lst: str) -> bytes:
    return zlib.decompress(_b64u_decode(lst))


def status_of(bits: bytes, idx: int) -> int:
    if idx < 0 or idx // 8 >= len(bits):
        raise IndexError("status index outside the list")
    return (bits[idx // 8] >> (idx % 8)) & 1


def claims(
    *,
    uri: str,
    jurisdiction: str,
    revoked: Iterable[int],
    issued_at: int,
    validity: int,
    ttl: int,
    revoked_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """The Status List Token's claims: ``sub`` is the URI certificates reference it by.
    ``revoked_keys`` (a private claim) names the issuer's withdrawn signing keys: a kiosk refuses
    tokens under them from this list on, even while it still holds the key itself."""
    return {
        "sub": uri,
        "iat": issued_at,
        "exp": issued_at + validity,
        "ttl": ttl,
        "jurisdiction": jurisdiction,
        "status_list": {"bits": 1, "lst": encode(revoked)},
        "revoked_keys": sorted(revoked_keys),
    }
