"""Payloads sealed to one jurisdiction: X25519 key agreement, HKDF-SHA256, AES-256-GCM.

The exchange seals each notification's payload to the target registry's encryption key from the
trust list, so whoever reads the broker, other jurisdictions included, sees only ciphertext.
An ephemeral X25519 key per payload (ECIES, the shape of HPKE's base mode): only the holder of
the recipient's private key derives the AES key. The associated data binds the ciphertext to
its notification (id, target, event type): it cannot be moved into another notification.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.events.payloads import SealedPayload
from shared.signing import b64u, b64u_decode

_INFO = b"migrant-exchange sealed payload v1"


class CannotOpen(ValueError):
    """Not sealed to a key held here, or altered."""


def _key(shared: bytes, epk: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + recipient, info=_INFO).derive(shared)


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def seal(plaintext: bytes, kid: str, recipient_raw: bytes, aad: bytes) -> SealedPayload:
    ephemeral = X25519PrivateKey.generate()
    epk = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_raw)), epk, recipient_raw)
    nonce = os.urandom(12)
    return SealedPayload(
        alg="X25519-HKDF-SHA256-A256GCM",
        kid=kid,
        epk=b64u(epk),
        nonce=b64u(nonce),
        ciphertext=b64u(AESGCM(key).encrypt(nonce, plaintext, aad)),
    )


def open_sealed(sealed: SealedPayload, keys: dict[str, X25519PrivateKey], aad: bytes) -> bytes:
    private = keys.get(sealed.kid)
    if private is None:
        raise CannotOpen("sealed to a key this registry does not hold")
    try:
        epk = b64u_decode(sealed.epk)
        key = _key(private.exchange(X25519PublicKey.from_public_bytes(epk)), epk, _raw(private.public_key()))
        return AESGCM(key).decrypt(b64u_decode(sealed.nonce), b64u_decode(sealed.ciphertext), aad)
    except (InvalidTag, ValueError) as e:
        raise CannotOpen("the sealed payload does not open: altered or not ours") from e


def notification_aad(notification_id: object, target: str, event_type: str) -> bytes:
    return f"{notification_id}|{target}|{event_type}".encode()
