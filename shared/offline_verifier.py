"""Offline verification of a certificate's QR token, for kiosks with no network at the counter.

A kiosk downloads two things while it has a connection, and nothing else:

* ``GET /v1/keys``: every issuer's current and previous Ed25519 public keys (a JWKS), plus the
  key that signs status lists (``"purpose": "status-list"``);
* ``GET /v1/status-lists/{issuer}``: a revocation bitstring in the style of the W3C Bitstring
  Status List (GZIP, base64url, multibase ``u`` prefix), inside a compact JWS of its own; or, asked
  with ``Accept: application/statuslist+jwt``, an IETF Token Status List token
  (``add_token_status_list``).

Then ``OfflineVerifier(jwks, lists).verify(token, purpose)`` answers valid / expired / revoked /
invalid_signature / status_unknown, with only the attributes the purpose allows.

Self-contained on purpose: the standard library and the ``cryptography`` wheel (Ed25519) only,
no framework, no database, no network, so a kiosk can ship this one file.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# A parsed JSON document (a key set, a status list, a token's claims): read by key, checked where used.
# Defined here, not taken from shared.jsontypes: this file ships alone.
JsonObject = dict[str, Any]

# Field-level disclosure per purpose: the minimum each service needs. Never pregnancy data:
# certificates do not carry it, and no purpose may name it.
PURPOSE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "arrival_registration": ("holder_name", "marital_status", "children_count"),
    "maternal_care_services": ("holder_name", "children_count"),
    "benefits": ("holder_name", "marital_status", "children_count", "valid_until"),
    "identity_check": (),
}
# QR claim -> attribute name (the claims are kept short so the QR code stays small).
CLAIM_ATTRIBUTES = {
    "name": "holder_name",
    "ms": "marital_status",
    "ch": "children_count",
    "exp": "valid_until",
}

# 16 KiB of bits: the W3C minimum, so one list hides which certificate a kiosk looks up.
STATUS_LIST_MIN_BITS = 131_072
STATUS_LIST_PURPOSE = "status-list"


class BadToken(ValueError):
    """The token is not a compact JWS, or its signature does not verify."""


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the bitstring --------------------------------------------------------------------------------
def encode_bitstring(revoked: Iterable[int], min_bits: int = STATUS_LIST_MIN_BITS) -> str:
    """Bits set at the revoked indices; index 0 is the left-most bit of the first byte (W3C)."""
    indices = list(revoked)
    size = max(min_bits, max(indices, default=0) + 1)
    bits = bytearray((size + 7) // 8)
    for i in indices:
        bits[i // 8] |= 0x80 >> (i % 8)
    return "u" + b64u(gzip.compress(bytes(bits), mtime=0))


def decode_bitstring(encoded: str) -> bytes:
    if not encoded.startswith("u"):
        raise ValueError("encodedList must be multibase base64url (prefix 'u')")
    return gzip.decompress(b64u_decode(encoded[1:]))


def bit_is_set(bits: bytes, index: int) -> bool:
    if index < 0 or index // 8 >= len(bits):
        raise IndexError("status index outside the list")
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


# --- JWS ------------------------------------------------------------------------------------------
def verify_jws(token: str, keys: Mapping[str, bytes]) -> tuple[JsonObject, JsonObject]:
    """Check a compact EdDSA JWS against ``keys`` (kid -> raw public key); return header and claims."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise BadToken("not a compact JWS")
    try:
        header = json.loads(b64u_decode(parts[0]))
        signature = b64u_decode(parts[2])
    except ValueError as e:
        raise BadToken("not a compact JWS") from e
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        raise BadToken("only EdDSA tokens are accepted")
    raw = keys.get(str(header.get("kid")))
    if raw is None:
        raise BadToken("signed by an unknown key")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, f"{parts[0]}.{parts[1]}".encode())
        claims = json.loads(b64u_decode(parts[1]))
    except (InvalidSignature, ValueError) as e:
        raise BadToken("signature does not match") from e
    if not isinstance(claims, dict):
        raise BadToken("claims are not a JSON object")
    return header, claims


# --- the verifier ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfflineResult:
    result: str  # valid | expired | revoked | invalid_signature | status_unknown
    certificate_number: str | None = None
    issuer: str | None = None
    attributes: dict[str, object] = field(default_factory=dict)
    reason: str | None = None


@dataclass(frozen=True)
class _StatusList:
    bits: bytes
    valid_until: dt.datetime
    revoked_keys: frozenset[str] = frozenset()
    lsb_first: bool = False  # the IETF Token Status List's bit order; the W3C list is MSB first

    def revoked(self, index: int) -> bool:
        if not self.lsb_first:
            return bit_is_set(self.bits, index)
        if index < 0 or index // 8 >= len(self.bits):
            raise IndexError("status index outside the list")
        return bool((self.bits[index // 8] >> (index % 8)) & 1)


def _parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class OfflineVerifier:
    """Verifies QR tokens against downloaded keys and status lists; holds no secrets."""

    def __init__(self, jwks: JsonObject, status_lists: Iterable[JsonObject] = ()):
        self.issuer_keys: dict[str, bytes] = {}
        self.key_issuer: dict[str, str] = {}
        self.key_expiry: dict[str, dt.datetime] = {}  # a retired key's end of overlap
        self.list_keys: dict[str, bytes] = {}
        for k in jwks.get("keys", []):
            if k.get("kty") != "OKP" or k.get("crv") != "Ed25519":
                continue
            raw = b64u_decode(k["x"])
            if k.get("purpose") == STATUS_LIST_PURPOSE:
                self.list_keys[k["kid"]] = raw
            elif k.get("jurisdiction"):
                self.issuer_keys[k["kid"]] = raw
                self.key_issuer[k["kid"]] = k["jurisdiction"]
                if k.get("expires_at"):
                    self.key_expiry[k["kid"]] = _parse_time(str(k["expires_at"]))
        self.lists: dict[str, _StatusList] = {}
        for document in status_lists:
            self.add_status_list(document)

    def add_status_list(self, document: JsonObject) -> str:
        """Check a downloaded status list's signature and keep it; returns the issuer it covers."""
        _, credential = verify_jws(document["jws"], self.list_keys)
        subject = credential["credentialSubject"]
        if subject.get("statusPurpose") != "revocation":
            raise BadToken("not a revocation status list")
        issuer = str(subject["jurisdiction"])
        self.lists[issuer] = _StatusList(
            decode_bitstring(subject["encodedList"]),
            _parse_time(credential["validUntil"]),
            frozenset(str(k) for k in subject.get("revokedKeys", [])),
        )
        return issuer

    def add_token_status_list(self, token: str) -> str:
        """Check an IETF Token Status List token (``statuslist+jwt``) and keep it; returns its issuer."""
        header, claims = verify_jws(token, self.list_keys)
        listed = claims.get("status_list")
        if header.get("typ") != "statuslist+jwt" or not isinstance(listed, dict) or listed.get("bits") != 1:
            raise BadToken("not a one-bit status list token")
        issuer = str(claims["jurisdiction"])
        self.lists[issuer] = _StatusList(
            zlib.decompress(b64u_decode(listed["lst"])),
            dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC),
            frozenset(str(k) for k in claims.get("revoked_keys", [])),
            lsb_first=True,
        )
        return issuer

    def verify(self, token: str, purpose: str, *, now: dt.datetime | None = None) -> OfflineResult:
        """The verdict on a scanned token, and the attributes ``purpose`` allows."""
        if purpose not in PURPOSE_ATTRIBUTES:
            raise ValueError(f"unknown purpose {purpose!r}")
        now = now or dt.datetime.now(dt.UTC)
        try:
            header, claims = verify_jws(token, self.issuer_keys)
        except BadToken as e:
            return OfflineResult("invalid_signature", reason=str(e))
        issuer, kid = str(claims.get("iss")), str(header.get("kid"))
        if self.key_issuer.get(kid) != issuer:
            return OfflineResult("invalid_signature", reason="key does not belong to the issuer named")
        if kid in self.key_expiry and self.key_expiry[kid] < now:  # as the service and the page judge it
            return OfflineResult("invalid_signature", reason="signed by a key past its overlap window")
        if not certificate_claims(claims):
            return OfflineResult("invalid_signature", reason="the claims are not a certificate's")
        number = claims.get("num")
        status = self.lists.get(issuer)
        if status is None or status.valid_until < now:
            return OfflineResult(
                "status_unknown", number, issuer, reason="no current status list for this issuer"
            )
        if kid in status.revoked_keys:
            return OfflineResult("revoked", number, issuer, reason="the issuer revoked the signing key")
        reference = claims.get("status")
        try:
            index = reference["status_list"]["idx"] if isinstance(reference, dict) else claims["sti"]
            revoked = status.revoked(int(index))
        except (IndexError, KeyError, ValueError, TypeError):
            return OfflineResult("status_unknown", number, issuer, reason="status index not in the list")
        if revoked:
            result = "revoked"
        elif dt.date.fromisoformat(claims["exp"]) < now.date():
            result = "expired"
        else:
            result = "valid"
        return OfflineResult(result, number, issuer, attributes_for(claims, purpose))


def certificate_claims(claims: Mapping[str, object]) -> bool:
    """Whether a signed token's claims are a certificate's as registries issue them
    (``services.registry.domain.certificates``), as far as a verdict reads them: its number, its
    status index and its validity as a date. A token whose claims are not (an issuer's bug, a key
    used for something else) is no certificate, whoever signed it: nothing it says can be checked
    as one."""
    num, sti, exp = (claims.get(k) for k in ("num", "sti", "exp"))
    if not (isinstance(num, str) and isinstance(exp, str)):
        return False
    if type(sti) is not int or sti < 0:
        return False
    try:
        dt.date.fromisoformat(exp)
    except ValueError:
        return False
    return True


def attributes_for(claims: Mapping[str, object], purpose: str) -> dict[str, object]:
    """The token's attributes that ``purpose`` allows, under their long names."""
    allowed = PURPOSE_ATTRIBUTES[purpose]
    named = {CLAIM_ATTRIBUTES[k]: v for k, v in claims.items() if k in CLAIM_ATTRIBUTES}
    return {f: named[f] for f in allowed if f in named}
