"""Ed25519 signatures as compact JWS (alg EdDSA), small enough for a QR code.

Pure functions over the ``cryptography`` library (checks by libsodium, ``shared.ed25519``): the
registry signs, the verification service and offline kiosks verify against published public
keys (JWKS).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from shared.ed25519 import Verifier
from shared.jsontypes import JsonObject


class BadSignature(ValueError):
    """The token is malformed, signed by an unknown key, or altered."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def jwk(kid: str, public_raw: bytes, **extra: object) -> dict[str, object]:
    """The public JWK (RFC 8037 OKP) of an Ed25519 key."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": kid,
        "x": b64u(public_raw),
        **extra,
    }


def sign(claims: Mapping[str, object], key: Ed25519PrivateKey, kid: str) -> str:
    header = b64u(orjson.dumps({"alg": "EdDSA", "kid": kid}))
    payload = b64u(orjson.dumps(claims, option=orjson.OPT_SORT_KEYS))
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{b64u(key.sign(signing_input))}"


def unverified_header(token: str) -> JsonObject:
    try:
        header = orjson.loads(b64u_decode(token.split(".", 1)[0]))
    except Exception as e:
        raise BadSignature("token is not a compact JWS") from e
    if not isinstance(header, dict):
        raise BadSignature("token header is not a JSON object")
    return header


def verify(token: str, public_keys: Mapping[str, bytes]) -> JsonObject:
    """Check the signature with the key named by ``kid`` and return the claims."""
    parts = token.split(".")
    if len(parts) != 3:
        raise BadSignature("token is not a compact JWS")
    header = unverified_header(token)
    if header.get("alg") != "EdDSA":
        raise BadSignature("only EdDSA tokens are accepted")
    raw = public_keys.get(str(header.get("kid")))
    if raw is None:
        raise BadSignature("token is signed by an unknown key")
    try:
        Verifier(raw).verify(b64u_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode())
        claims = orjson.loads(b64u_decode(parts[1]))
    except (InvalidSignature, ValueError) as e:
        raise BadSignature("signature does not match") from e
    if not isinstance(claims, dict):
        raise BadSignature("token claims are not a JSON object")
    return claims
