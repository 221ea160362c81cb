"""Event signatures: every event is signed by the party that produced it, over the whole envelope.

Two CloudEvents extension attributes travel inside the structured-mode JSON, so the signature
stays with the event wherever its bytes go (Kafka, a dead letter, a replay):

* ``signer``: the key id (``kid``) of an event-signing key in the trust list;
* ``signature``: base64url of the Ed25519 signature over the canonical form of the envelope.

The canonical form is the JSON of every attribute (``data`` included, ``signer`` included, only
``signature`` itself left out) with object keys sorted at every level, no insignificant
whitespace and UTF-8 text (orjson with ``OPT_SORT_KEYS``). It is computed from the bytes as
received, not from a re-serialised model, so producer and consumer agree byte for byte.

``authority`` is the part of section 10's table that the envelope alone decides; the rules
that need a service's own records (feedback only from the notification's target, corrections
only by a record's owner) live beside that service's handlers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.signing import b64u, b64u_decode
from shared.trust import EXCHANGE, VERIFICATION, Keyring, Party, TrustList

# The reasons an event is refused, as they appear in the metric label and the dead letter.
UNSIGNED, UNKNOWN_SIGNER, SIGNER_NOT_VALID, BAD_SIGNATURE, NOT_AUTHORIZED = (
    "unsigned",
    "unknown_signer",
    "signer_not_valid",
    "bad_signature",
    "not_authorized",
)
REASONS = (UNSIGNED, UNKNOWN_SIGNER, SIGNER_NOT_VALID, BAD_SIGNATURE, NOT_AUTHORIZED)


class Rejected(Exception):
    """An event that must not be applied: ``reason`` is one of ``REASONS``, ``detail`` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the envelope without ``signature``, keys sorted."""
    return orjson.dumps({k: v for k, v in doc.items() if k != "signature"}, option=orjson.OPT_SORT_KEYS)


def sign_document(doc: dict[str, Any], kid: str, key: Ed25519PrivateKey) -> bytes:
    """The envelope's bytes as published: ``signer`` set, then signed over everything."""
    doc = {**doc, "signer": kid}
    doc.pop("signature", None)
    doc["signature"] = b64u(key.sign(canonical(doc)))
    return orjson.dumps(doc)


def sign_value(value: bytes, kid: str, key: Ed25519PrivateKey) -> bytes:
    doc = orjson.loads(value)
    if not isinstance(doc, dict):
        raise ValueError("an event must be a JSON object")
    return sign_document(doc, kid, key)


def sign_outgoing(keyring: Keyring, value: bytes, now: dt.datetime) -> bytes | None:
    """An outbox row's event signed with its source's key, or None when this process has none.

    The relay signs as events leave, rather than when the outbox row is written: the private key
    then lives only in the process that publishes, and no writer of the outbox (requests,
    consumers, sweeps, the roster import) needs it. Ed25519 signatures are deterministic, so a
    re-sent event is byte for byte the one sent first.
    """
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    party = source_party(str(doc.get("source", ""))) if isinstance(doc, dict) else None
    signer = keyring.signing_key(party, now) if party else None
    return sign_document(doc, *signer) if signer else None


def verify_value(value: bytes, trust: TrustList, now: dt.datetime | None = None) -> Party:
    """The party that signed these bytes, or ``Rejected`` (unsigned, unknown or invalid key,
    signature not matching)."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise Rejected(UNSIGNED, "not a JSON object") from e
    if not isinstance(doc, dict):
        raise Rejected(UNSIGNED, "not a JSON object")
    signature, kid = doc.get("signature"), doc.get("signer")
    if not isinstance(signature, str) or not isinstance(kid, str) or not signature or not kid:
        raise Rejected(UNSIGNED, "the event carries no signer and signature")
    found = trust.signer(kid)
    if found is None:
        raise Rejected(UNKNOWN_SIGNER, "the signing key is not in the trust list")
    party, entry, public = found
    if not entry.valid_at(now or dt.datetime.now(dt.UTC)):
        raise Rejected(SIGNER_NOT_VALID, f"the signing key of {party} is outside its validity")
    try:
        public.verify(b64u_decode(signature), canonical(doc))
    except (InvalidSignature, ValueError) as e:
        raise Rejected(BAD_SIGNATURE, "the signature does not match the event") from e
    return party


def source_party(source: str) -> Party | None:
    """The party a ``source`` attribute claims: ``exchange``, ``verification`` or the registry's division."""
    if source == "/exchange":
        return EXCHANGE
    if source == "/verification":
        return VERIFICATION
    kind, _, code = source.strip("/").partition("/")
    return code if kind == "registry" and code else None


def authority(event: Any, party: Party) -> None:
    """Raise ``Rejected(not_authorized)`` unless ``party`` may say this event (DESIGN section 10).

    A producer speaks only for itself: the source must be the signer's. Notifications come only
    from the exchange; feedback from the division it speaks for (or the exchange relaying a
    REST-only jurisdiction's answer); certificate events only from their issuer, and never with
    a key in them; vital events only from a registry. A disclosure is reported only by the party
    that disclosed (the exchange, verification, or a registry for its own reads); verification
    says nothing else.
    """
    claimed = source_party(event.source)
    if claimed != party:
        raise Rejected(NOT_AUTHORIZED, f"signed by {party}, claims source {event.source}")
    kind = event.type
    if kind == "disclosure.recorded.v1":
        if event.data.discloser != party:
            raise Rejected(NOT_AUTHORIZED, f"{party} reports a disclosure by {event.data.discloser}")
    elif party == VERIFICATION:
        raise Rejected(NOT_AUTHORIZED, f"verification reports disclosures only, not {kind}")
    elif kind == "exchange.notification.v1":
        if party != EXCHANGE:
            raise Rejected(NOT_AUTHORIZED, "notifications come only from the exchange")
    elif kind == "exchange.feedback.v1":
        if party not in (EXCHANGE, event.data.from_division):
            raise Rejected(NOT_AUTHORIZED, f"feedback from {party} claims to come from another division")
    elif party == EXCHANGE:
        raise Rejected(NOT_AUTHORIZED, f"{kind} comes only from a registry")
    elif kind.startswith("certificate.") and event.data.issuer != party:
        raise Rejected(NOT_AUTHORIZED, f"a certificate of another issuer, signed by {party}")
    elif kind == "certificate.issued.v1" and event.data.public_key_jwk is not None:
        # Keys come only from a source bound to their issuer (the trust list's key URL); an
        # event carrying one is how an outsider once slipped a key in: refused, whoever signed.
        raise Rejected(
            NOT_AUTHORIZED, "certificate events carry no keys; keys come from the issuer's key URL"
        )
