"""Payloads sealed to one jurisdiction: X25519 key agreement, HKDF-SHA256, AES-256-GCM.

The exchange seals each notification's payload to the target registry's encryption key from the
trust list, so whoever reads the broker, other jurisdictions included, sees only ciphertext.
An ephemeral X25519 key (ECIES, the shape of HPKE's base mode): only the holder of the
recipient's private key derives the AES key. The associated data binds the ciphertext to its
notification (id, target, event type): it cannot be moved into another notification.

A notification of a restricted event (a pregnancy, or a correction of one:
``shared.sensitivity.is_restricted``, by its type and payload) names on the broker only the neutral
category and no withheld field, since every registry reads the topic and can compute the subject
key of anyone whose identity number it knows. What it seals is then the event's real type and
withheld fields with the payload (``RestrictedEventV1``); the associated data binds the neutral
name, and the addressee applies only a restricted event found under it (``notification_contents``).
Any other notification seals its bare payload under its own type, as a correction of a pregnancy
queued by an exchange not yet upgraded still does.

The key agreement costs more than everything else a notification costs, so an ephemeral key and
the AES key derived from it serve one recipient key for a while (``EPHEMERAL_SECONDS`` or
``EPHEMERAL_USES`` payloads, whichever comes first), each payload with a fresh random nonce (far
below AES-GCM's limit for random nonces), and the recipient keeps the keys it derived per
ephemeral key. A new ephemeral key every few minutes still limits what one compromised process
memory exposes.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import ValidationError

from shared.events.payloads import RestrictedEventV1, SealedPayload
from shared.sensitivity import NEUTRAL_CATEGORY, is_restricted
from shared.signing import b64u, b64u_decode

_INFO = b"migrant-exchange sealed payload v1"
EPHEMERAL_SECONDS = 600.0
EPHEMERAL_USES = 100_000
_ALG = "X25519-HKDF-SHA256-A256GCM"


class CannotOpen(ValueError):
    """Not sealed to a key held here, or altered."""


def _key(shared: bytes, epk: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + recipient, info=_INFO).derive(shared)


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class _Sender:
    """The current ephemeral key and derived AES key per recipient key."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, bytes], tuple[str, AESGCM, float, int]] = {}

    def key_for(self, kid: str, recipient_raw: bytes) -> tuple[str, AESGCM]:
        now = time.monotonic()
        found = self.keys.get((kid, recipient_raw))
        if found is None or now - found[2] > EPHEMERAL_SECONDS or found[3] >= EPHEMERAL_USES:
            ephemeral = X25519PrivateKey.generate()
            epk = _raw(ephemeral.public_key())
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_raw))
            found = (b64u(epk), AESGCM(_key(shared, epk, recipient_raw)), now, 0)
        self.keys[(kid, recipient_raw)] = (found[0], found[1], found[2], found[3] + 1)
        return found[0], found[1]


class _Receiver:
    """AES keys derived per (recipient kid, ephemeral key), the most recent few hundred."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.keys: OrderedDict[tuple[str, str, bytes], AESGCM] = OrderedDict()

    def key_for(self, sealed: SealedPayload, private: X25519PrivateKey) -> AESGCM:
        recipient = _raw(private.public_key())
        cache_key = (sealed.kid, sealed.epk, recipient)
        aes = self.keys.get(cache_key)
        if aes is None:
            epk = b64u_decode(sealed.epk)
            shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
            aes = self.keys[cache_key] = AESGCM(_key(shared, epk, recipient))
            while len(self.keys) > self.size:
                self.keys.popitem(last=False)
        return aes


_SENDER = _Sender()
_RECEIVER = _Receiver()


def seal(plaintext: bytes, kid: str, recipient_raw: bytes, aad: bytes) -> SealedPayload:
    epk, aes = _SENDER.key_for(kid, recipient_raw)
    nonce = os.urandom(12)
    return SealedPayload(
        alg=_ALG, kid=kid, epk=epk, nonce=b64u(nonce), ciphertext=b64u(aes.encrypt(nonce, plaintext, aad))
    )


def open_sealed(sealed: SealedPayload, keys: dict[str, X25519PrivateKey], aad: bytes) -> bytes:
    private = keys.get(sealed.kid)
    if private is None:
        raise CannotOpen("sealed to a key this registry does not hold")
    try:
        aes = _RECEIVER.key_for(sealed, private)
        return aes.decrypt(b64u_decode(sealed.nonce), b64u_decode(sealed.ciphertext), aad)
    except (InvalidTag, ValueError) as e:
        raise CannotOpen("the sealed payload does not open: altered or not ours") from e


def notification_aad(notification_id: object, target: str, event_type: str) -> bytes:
    """What a notification's seal is bound to: its id, its target and the type it names in clear."""
    return f"{notification_id}|{target}|{event_type}".encode()


def notification_named(event_type: str, withheld: list[str], payload: Any) -> tuple[str, list[str]]:
    """The type and withheld fields a notification of ``event_type`` carrying ``payload`` names
    outside its seal: a restricted event (``is_restricted``: a pregnancy, a correction of one) by
    the neutral category only, and none of its withheld fields."""
    return (NEUTRAL_CATEGORY, []) if is_restricted(event_type, payload) else (event_type, withheld)


def notification_plaintext(event_type: str, withheld: list[str], payload: Any) -> bytes:
    """What the exchange seals for a notification of ``event_type``: the bare payload, or for a
    restricted event (``notification_named``) the real type and withheld fields with it."""
    if not is_restricted(event_type, payload):
        return orjson.dumps(payload)
    return orjson.dumps({"event_type": event_type, "withheld_fields": withheld, "payload": payload})


def notification_contents(plaintext: bytes, named: str, withheld: list[str]) -> tuple[str, list[str], Any]:
    """The event type, withheld fields and payload of an opened notification that names ``named``
    and ``withheld`` in clear. Under the neutral category the seal must hold a restricted event
    (``is_restricted`` by its real type and payload: a pregnancy, a correction of one), and only
    that: anything else there is refused as not what was named. A notification named by its own
    type is taken as it is named (a correction of a pregnancy from an exchange not yet upgraded)."""
    if named != NEUTRAL_CATEGORY:
        return named, withheld, orjson.loads(plaintext)
    try:
        inside = RestrictedEventV1.model_validate_json(plaintext)
    except ValidationError as e:
        raise CannotOpen(f"a notification named {NEUTRAL_CATEGORY} does not seal a restricted event") from e
    kind = inside.event_type
    if kind == NEUTRAL_CATEGORY or not is_restricted(kind, inside.payload) or withheld:
        raise CannotOpen(f"a notification named {NEUTRAL_CATEGORY} seals another kind of event")
    return kind, list(inside.withheld_fields), inside.payload
