"""Ed25519 signing and verification on the hot paths, by libsodium (PyNaCl, the Python Cryptographic Authority's binding).

Every event is signed once and checked at each hop, and every kiosk answer checks a
certificate's signature: the one asymmetric operation each of them pays. libsodium's Ed25519
verifies in about half the time of OpenSSL's as ``cryptography`` calls it (64-74 against
118-142 µs per signature on the reference machine, 2026-12-03), and signs in two thirds of it.
Key material, JWKs and X25519 stay with ``cryptography``; this module takes raw key bytes.

The signatures are the same: Ed25519 (RFC 8032) is deterministic, so a key signs a message with
the same 64 bytes under either library (``tests/unit/test_ed25519.py`` checks both ways).
libsodium's check is the stricter (it refuses small-order keys and non-canonical signatures, as
RFC 8032 allows), which no honest signer produces.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.exceptions import InvalidSignature
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

KEY_BYTES = 32
SIGNATURE_BYTES = 64


class SigningKey(Protocol):
    """Anything that signs with Ed25519: a ``Signer`` or ``cryptography``'s private key."""

    def sign(self, data: bytes) -> bytes: ...


class Signer:
    """An Ed25519 private key from its 32-byte seed (the raw private key)."""

    __slots__ = ("_secret", "public_bytes")

    def __init__(self, seed: bytes):
        if len(seed) != KEY_BYTES:
            raise ValueError("an Ed25519 private key is 32 bytes")
        self.public_bytes, self._secret = crypto_sign_seed_keypair(seed)

    def sign(self, data: bytes) -> bytes:
        return crypto_sign(data, self._secret)[:SIGNATURE_BYTES]


class Verifier:
    """An Ed25519 public key from its 32 raw bytes."""

    __slots__ = ("_public",)

    def __init__(self, public: bytes):
        if len(public) != KEY_BYTES:
            raise ValueError("an Ed25519 public key is 32 bytes")
        self._public = public

    def verify(self, signature: bytes, data: bytes) -> None:
        """Return if ``signature`` is this key's over ``data``, else raise ``InvalidSignature``
        (``cryptography``'s, as the rest of the code expects)."""
        if len(signature) != SIGNATURE_BYTES:
            raise InvalidSignature("an Ed25519 signature is 64 bytes")
        try:
            crypto_sign_open(signature + data, self._public)
        except BadSignatureError as e:
            raise InvalidSignature(str(e)) from e
