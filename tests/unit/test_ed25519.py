"""libsodium's Ed25519 (``shared.ed25519``) against ``cryptography``'s: the same signatures, and
each refuses what the other would."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from hypothesis import given
from hypothesis import strategies as st

from shared import signing
from shared.ed25519 import Signer, Verifier


@given(message=st.binary(max_size=2048))
def test_both_libraries_make_the_same_signature_and_accept_each_others(message: bytes) -> None:
    key = signing.new_private_key()
    ours = Signer(signing.private_bytes(key))
    theirs = key.sign(message)
    assert ours.public_bytes == signing.public_bytes(key)
    assert ours.sign(message) == theirs
    Verifier(signing.public_bytes(key)).verify(theirs, message)
    key.public_key().verify(ours.sign(message), message)


@pytest.mark.parametrize("alter", ["message", "signature", "key", "short signature"])
def test_an_altered_message_signature_or_key_is_refused(alter: str) -> None:
    key = Signer(signing.private_bytes(signing.new_private_key()))
    other = Signer(signing.private_bytes(signing.new_private_key()))
    message = b'{"type":"migration.arrived.v1"}'
    signature = key.sign(message)
    public = key.public_bytes
    if alter == "message":
        message = message.replace(b"arrived", b"departed")
    elif alter == "signature":
        signature = signature[:10] + bytes([signature[10] ^ 1]) + signature[11:]
    elif alter == "key":
        public = other.public_bytes
    else:
        signature = signature[:63]
    with pytest.raises(InvalidSignature):
        Verifier(public).verify(signature, message)


def test_a_small_order_key_is_refused_whatever_it_signed() -> None:
    """The identity point as a public key, with the signature (R = identity, S = 0) that satisfies
    the verification equation for every message under a lax check: libsodium refuses it."""
    identity = bytes([1]) + bytes(31)
    with pytest.raises(InvalidSignature):
        Verifier(identity).verify(identity + bytes(32), b"any message")


def test_keys_of_the_wrong_length_are_refused_when_made() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(bytes(31))
    with pytest.raises(ValueError, match="32 bytes"):
        Verifier(bytes(33))
