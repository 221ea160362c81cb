"""Event signatures: every event is signed by the party that produced it, over the whole envelope.

Two CloudEvents extension attributes travel inside the structured-mode JSON, so the signature
stays with the event wherever its bytes go (Kafka, a dead letter, a replay):

* ``signer``: the key id (``kid``) of an event-signing key in the trust list;
* ``signature``: base64url of the Ed25519 signature over the canonical form of the envelope.

The canonical form is the JSON of every attribute (``data`` included, ``signer`` included, only
``signature`` itself left out) with object keys sorted at every level, no insignificant
whitespace and UTF-8 text (orjson with ``OPT_SORT_KEYS``). It is computed from the bytes as
received, not from a re-serialised model, so producer and consumer agree byte for byte.

**Batch signatures** (as X-Road's signer does): a relay publishing many events at once signs
them with one signature. Each event's canonical form is a leaf of a Merkle tree (RFC 6962's
hashing: SHA-256 with a 0x00 prefix for leaves, 0x01 for nodes); the signature covers the root,
and each event carries its path to the root in a third extension attribute, ``sigproof``. A
consumer rebuilds the root from the event it received and verifies the root's signature once:
the other events of the batch find the same root already verified. An event alone in its batch
carries no proof and is signed over its canonical form directly.

``authority`` is the part of section 10's table that the envelope alone decides; the rules
that need a service's own records (feedback only from the notification's target, corrections
only by a record's owner) live beside that service's handlers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature

from shared.ed25519 import SigningKey, Verifier
from shared.events.envelope import AnyEnvelope
from shared.identity import subject_key
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


PROOF = "sigproof"
_UNSIGNED_ATTRIBUTES = ("signature", PROOF)
# What a batch signature signs: this prefix and the root. A single event's signature covers its
# canonical JSON, which starts with "{", so neither can pass for the other.
_BATCH_DOMAIN = b"migrant-exchange/event-batch/v1\x00"
MAX_BATCH = 1024  # events under one signature (a proof of at most ten steps)
_MAX_PROOF_STEPS = 24


def canonical(doc: dict[str, object]) -> bytes:
    """The bytes a signature covers: the envelope without ``signature`` (and ``sigproof``),
    keys sorted."""
    return orjson.dumps(
        {k: v for k, v in doc.items() if k not in _UNSIGNED_ATTRIBUTES}, option=orjson.OPT_SORT_KEYS
    )


def _leaf(doc: dict[str, object]) -> bytes:
    return hashlib.sha256(b"\x00" + canonical(doc)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_proofs(leaves: Sequence[bytes]) -> tuple[bytes, list[str]]:
    """The root of a tree over ``leaves`` and each leaf's path to it, encoded as ``sigproof``:
    comma-separated steps, each ``L`` or ``R`` (the sibling's side) and the sibling's base64url
    hash. A level with an odd count carries its last node up unpaired."""
    level = list(leaves)
    at = list(range(len(level)))  # each leaf's node index on the current level
    steps: list[list[str]] = [[] for _ in level]
    while len(level) > 1:
        # each node is a sibling to every leaf under its twin: encode each step once per level
        as_left = ["L" + b64u(node) for node in level]
        as_right = ["R" + b64u(node) for node in level]
        for leaf, j in enumerate(at):
            sibling = j ^ 1
            if sibling < len(level):
                steps[leaf].append(as_left[sibling] if sibling < j else as_right[sibling])
            at[leaf] = j // 2
        level = [
            _node(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)
        ]
    return level[0], [",".join(s) for s in steps]


def _path(leaf: bytes, proof: str, known: set[bytes]) -> tuple[bytes, list[bytes]]:
    """The nodes from ``leaf`` up along ``proof``: up to the first node in ``known`` (already
    authenticated under the same signature) or else to the root, which is then the last node."""
    steps = proof.split(",")
    if len(steps) > _MAX_PROOF_STEPS:
        raise ValueError("proof too long")
    node, nodes = leaf, [leaf]
    for step in steps:
        if node in known:
            break
        sibling = b64u_decode(step[1:])
        if step[:1] not in ("L", "R") or len(sibling) != 32:
            raise ValueError("malformed proof step")
        node = _node(sibling, node) if step[0] == "L" else _node(node, sibling)
        nodes.append(node)
    return node, nodes


class _VerifiedRoots:
    """Batch trees whose root signature this process has verified, by (kid, signature), and the
    nodes of the paths that led to their roots.

    Every node on a path to a root whose signature verified is authenticated: by SHA-256's
    collision resistance (leaves and nodes hashed with different prefixes), a path that reaches
    one started from a leaf of that signed tree. So the next event of the batch climbs only to
    the first node an earlier event authenticated, most often its parent: a hash or two rather
    than ten, and no Ed25519 verification. Roots are kept for the last ``size`` trees, the nodes
    for the last ``with_nodes`` (a tree of 1,024 events has ~2,000)."""

    def __init__(self, size: int = 4096, with_nodes: int = 64):
        self._roots: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._nodes: OrderedDict[tuple[str, str], set[bytes]] = OrderedDict()
        self._size = size
        self._with_nodes = with_nodes

    def known(self, kid: str, signature: str) -> set[bytes]:
        """The authenticated nodes of the tree under this signature, its root among them; empty
        when no event signed so was verified yet."""
        key = (kid, signature)
        root = self._roots.get(key)
        if root is None:
            return set()
        self._roots.move_to_end(key)
        return self._nodes_of(key, root)

    def add(self, kid: str, signature: str, nodes: list[bytes], root: bytes | None = None) -> None:
        """Nodes of a path found authenticated; ``root`` when its signature was just verified."""
        key = (kid, signature)
        if root is not None:
            self._roots[key] = root
            self._roots.move_to_end(key)
            if len(self._roots) > self._size:
                self._roots.popitem(last=False)
        if key in self._roots:
            self._nodes_of(key, self._roots[key]).update(nodes)

    def _nodes_of(self, key: tuple[str, str], root: bytes) -> set[bytes]:
        nodes = self._nodes.get(key)
        if nodes is None:
            nodes = self._nodes[key] = {root}
            if len(self._nodes) > self._with_nodes:
                self._nodes.popitem(last=False)
        self._nodes.move_to_end(key)
        return nodes

    def clear(self) -> None:
        self._roots.clear()
        self._nodes.clear()


_verified_roots = _VerifiedRoots()


def forget_verified_batches() -> None:
    """Forget every batch root verified so far (benchmarks measure a batch met afresh)."""
    _verified_roots.clear()


def sign_document(doc: dict[str, object], kid: str, key: SigningKey) -> bytes:
    """The envelope's bytes as published: ``signer`` set, then signed over everything."""
    return sign_documents([doc], kid, key)[0]


def sign_documents(docs: Sequence[dict[str, object]], kid: str, key: SigningKey) -> list[bytes]:
    """The envelopes' bytes as published, under one signature (batches of ``MAX_BATCH``)."""
    prepared = [{k: v for k, v in d.items() if k not in _UNSIGNED_ATTRIBUTES} | {"signer": kid} for d in docs]
    out: list[bytes] = []
    for start in range(0, len(prepared), MAX_BATCH):
        chunk = prepared[start : start + MAX_BATCH]
        if len(chunk) == 1:
            chunk[0]["signature"] = b64u(key.sign(canonical(chunk[0])))
        else:
            root, proofs = merkle_proofs([_leaf(d) for d in chunk])
            signature = b64u(key.sign(_BATCH_DOMAIN + root))
            for d, proof in zip(chunk, proofs, strict=True):
                d["signature"], d[PROOF] = signature, proof
        out.extend(orjson.dumps(d) for d in chunk)
    return out


def sign_value(value: bytes, kid: str, key: SigningKey) -> bytes:
    doc = orjson.loads(value)
    if not isinstance(doc, dict):
        raise ValueError("an event must be a JSON object")
    return sign_document(doc, kid, key)


def sign_outgoing(keyring: Keyring, value: bytes, now: dt.datetime) -> bytes | None:
    """An outbox row's event signed with its source's key, or None when this process has none."""
    return sign_outgoing_batch(keyring, [value], now)[0]


def sign_outgoing_batch(keyring: Keyring, values: Sequence[bytes], now: dt.datetime) -> list[bytes | None]:
    """Outbox rows' events signed with their sources' keys, one signature per source for the
    batch; None for an event whose source this process holds no key for.

    The relay signs as events leave, rather than when the outbox row is written: the private key
    then lives only in the process that publishes, and no writer of the outbox (requests,
    consumers, sweeps, the roster import) needs it. A re-sent event may travel in another batch,
    under another signature; consumers recognise it by its id, not its bytes.
    """
    out: list[bytes | None] = [None] * len(values)
    by_signer: dict[str, tuple[SigningKey, list[int], list[dict[str, object]]]] = {}
    signers: dict[str, tuple[str, SigningKey] | None] = {}  # by source, for this batch
    for i, value in enumerate(values):
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        source = str(doc.get("source", "")) if isinstance(doc, dict) else ""
        if source not in signers:
            party = source_party(source) if source else None
            signers[source] = keyring.signing_key(party, now) if party else None
        signer = signers[source]
        if signer is not None:
            group = by_signer.setdefault(signer[0], (signer[1], [], []))
            group[1].append(i)
            group[2].append(doc)
    for kid, (key, indexes, docs) in by_signer.items():
        for i, signed in zip(indexes, sign_documents(docs, kid, key), strict=True):
            out[i] = signed
    return out


def verify_value(value: bytes, trust: TrustList, now: dt.datetime | None = None) -> Party:
    """The party that signed these bytes, or ``Rejected`` (unsigned, unknown or invalid key,
    signature not matching)."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise Rejected(UNSIGNED, "not a JSON object") from e
    return verify_document(doc, trust, now)


def verify_document(doc: object, trust: TrustList, now: dt.datetime | None = None) -> Party:
    """``verify_value`` of the bytes' JSON as already decoded (a consumer decodes a message once:
    the signature is over the canonical form, which the decoded document gives as well)."""
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
        _verify(public, kid, signature, doc)
    except (InvalidSignature, ValueError) as e:
        raise Rejected(BAD_SIGNATURE, "the signature does not match the event") from e
    return party


def _verify(public: Verifier, kid: str, signature: str, doc: dict[str, object]) -> None:
    proof = doc.get(PROOF)
    if proof is None:
        public.verify(b64u_decode(signature), canonical(doc))
        return
    if not isinstance(proof, str):
        raise ValueError("sigproof is not a string")
    known = _verified_roots.known(kid, signature)
    top, nodes = _path(_leaf(doc), proof, known)
    if top in known:  # reached a node of a tree whose signature verified
        _verified_roots.add(kid, signature, nodes)
        return
    public.verify(b64u_decode(signature), _BATCH_DOMAIN + top)  # ``top`` is the path's root
    _verified_roots.add(kid, signature, nodes, root=top)


def source_party(source: str) -> Party | None:
    """The party a ``source`` attribute claims: ``exchange``, ``verification`` or the registry's division."""
    if source == "/exchange":
        return EXCHANGE
    if source == "/verification":
        return VERIFICATION
    kind, _, code = source.strip("/").partition("/")
    return code if kind == "registry" and code else None


def _divisions(*fields: str) -> Callable[[Any], tuple[str, ...]]:
    getters = [attrgetter(f) for f in fields]
    return lambda data: tuple(get(data) for get in getters)


# Where a vital event is recorded, as the registries' own write rules have it: a departure at the
# place left, an arrival or a return at the place arrived at, a marriage, a pregnancy or a birth
# where it is registered, a person where she is registered or lives. Only a registry of one of
# these divisions may say it (section 10: "vital events about a division: a registry trusted for
# that division"); otherwise one jurisdiction could move, or plant, another's residents.
PLACES_OF_RECORD: dict[str, Callable[[Any], tuple[str, ...]]] = {
    "person.registered.v1": _divisions("hukou_division", "residence_division"),
    "migration.departed.v1": _divisions("from_division"),
    "migration.arrived.v1": _divisions("to_division"),
    "migration.returned.v1": _divisions("to_division"),
    "marriage.registered.v1": _divisions("registered_in"),
    "pregnancy.registered.v1": _divisions("registered_in"),
    "birth.registered.v1": _divisions("birth_division"),
    "birth.registered.v2": _divisions("birth_place.division"),
}


def authority(event: AnyEnvelope, party: Party) -> None:
    """Raise ``Rejected(not_authorized)`` unless ``party`` may say this event (DESIGN section 10).

    A producer speaks only for itself: the source must be the signer's. Notifications come only
    from the exchange; feedback from the division it speaks for (or the exchange relaying a
    REST-only jurisdiction's answer; a batch of answers only from the division itself);
    certificate events only from their issuer, about its own numbers, and never with a key in
    them; vital events only from a registry of the division where they are recorded
    (``PLACES_OF_RECORD``). A disclosure (or a batch of them) is reported only by the party that
    disclosed (the exchange, verification, or a registry for its own reads); verification says
    nothing else.
    """
    claimed = source_party(event.source)
    if claimed != party:
        raise Rejected(NOT_AUTHORIZED, f"signed by {party}, claims source {event.source}")
    kind = event.type
    if kind in ("disclosure.recorded.v1", "disclosure.batch.v1"):
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
    elif kind == "exchange.feedback_batch.v1":
        if party != event.data.from_division:  # the exchange relays answers one by one, never batched
            raise Rejected(NOT_AUTHORIZED, f"feedback from {party} claims to come from another division")
    elif party == EXCHANGE:
        raise Rejected(NOT_AUTHORIZED, f"{kind} comes only from a registry")
    elif kind.startswith("certificate.") and (
        event.data.issuer != party or not event.data.certificate_number.startswith(f"{party}-")
    ):
        # A number is minted as ``<issuer>-<year>-<suffix>``: an issuer speaks only of its own.
        raise Rejected(NOT_AUTHORIZED, f"a certificate of another issuer, signed by {party}")
    elif kind in PLACES_OF_RECORD and party not in PLACES_OF_RECORD[kind](event.data):
        raise Rejected(NOT_AUTHORIZED, f"{party} speaks of a {kind} recorded at another division")
    elif kind == "certificate.issued.v1" and event.data.public_key_jwk is not None:
        # Keys come only from a source bound to their issuer (the trust list's key URL); an
        # event carrying one is how an outsider once slipped a key in: refused, whoever signed.
        raise Rejected(
            NOT_AUTHORIZED, "certificate events carry no keys; keys come from the issuer's key URL"
        )


# The persons an event is announced about: a registry announces it under the subject key of one
# of these identity numbers (a marriage once under each spouse's, a birth under the mother's).
_MIGRATION = ("id_number",)
_SPOUSES = ("spouse_a_id_number", "spouse_b_id_number")
SUBJECT_NUMBERS: dict[str, tuple[str, ...]] = {
    "person.registered.v1": ("id_number",),
    "migration.departed.v1": _MIGRATION,
    "migration.arrived.v1": _MIGRATION,
    "migration.returned.v1": _MIGRATION,
    "marriage.registered.v1": _SPOUSES,
    "marriage.dissolved.v1": _SPOUSES,
    "pregnancy.registered.v1": ("mother_id_number",),
    "pregnancy.closed.v1": ("mother_id_number",),
    "birth.registered.v2": ("mother_id_number",),
    "certificate.issued.v1": ("holder_id_number",),
}


def bound_to_subject(secret: bytes) -> Callable[[AnyEnvelope, Party], None]:
    """``authority``, and the event's subject must be the key of the person it is about.

    A consumer that keys its records by subject (the exchange's roster routes a person's later
    events, pregnancies included, by it) would otherwise let a registry that saw someone's
    pseudonymous key on a topic, without knowing her identity number, say an arrival under that
    key, and have her notifications sent to itself. Only holders of the subject-key secret (the
    exchange, verification) can check it.
    """

    def check(event: AnyEnvelope, party: Party) -> None:
        authority(event, party)
        fields = SUBJECT_NUMBERS.get(event.type)
        if fields and event.subject not in {subject_key(getattr(event.data, f), secret) for f in fields}:
            raise Rejected(NOT_AUTHORIZED, f"{event.type} under a subject that is not its person's key")

    return check
