"""Event signatures, the authority table, key validity, sealed payloads and bound key URLs (no I/O)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from services.verification.settings import VerificationSettings
from shared import signing
from shared.events.catalog import parse_event, spec_for
from shared.events.envelope import Envelope, new_event_id
from shared.events.signature import (
    Rejected,
    authority,
    bound_to_subject,
    sign_documents,
    sign_value,
    verify_value,
)
from shared.identity import subject_key
from shared.sealing import (
    CannotOpen,
    notification_aad,
    notification_contents,
    notification_named,
    notification_plaintext,
    open_sealed,
    seal,
)
from shared.sensitivity import NEUTRAL_CATEGORY
from shared.trust import DivisionTrust, ExchangeTrust, PublicKey, TrustList, bound_key_url
from tests.helpers import person_id, production_settings

NOW = dt.datetime.now(dt.UTC)
KEYS = {party: signing.new_private_key() for party in ("exchange", "320412", "440703")}


def _entry(party: str, **window: Any) -> PublicKey:
    return PublicKey(kid=f"{party}-k", public_key=signing.b64u(signing.public_bytes(KEYS[party])), **window)


TRUST = TrustList(
    exchange=ExchangeTrust(signing_keys=[_entry("exchange")]),
    divisions={"320412": DivisionTrust(signing_keys=[_entry("320412")]), "440703": DivisionTrust()},
)


def _event(event_type: str, source: str, data: dict[str, Any]) -> Envelope[Any]:
    spec = spec_for(event_type)
    return Envelope[spec.payload](  # type: ignore[name-defined]
        id=new_event_id(),
        source=source,
        type=event_type,
        subject="0" * 32,
        time=NOW,
        dataschema=spec.dataschema,
        sequence=1,
        data=spec.payload.model_validate(data),
    )


def _revoked(issuer: str, source: str) -> Envelope[Any]:
    data = {
        "certificate_number": f"{issuer}-2026-ABCDEFGH",
        "issuer": issuer,
        "revoked_on": "2026-01-01",
        "reason": "lost",
        "status_index": 1,
    }
    return _event("certificate.revoked.v1", source, data)


def _signed(event: Envelope[Any], party: str) -> bytes:
    return sign_value(event.model_dump_json().encode(), f"{party}-k", KEYS[party])


def _reason(value: bytes, trust: TrustList = TRUST, now: dt.datetime = NOW) -> str:
    with pytest.raises(Rejected) as caught:
        authority(parse_event(value), verify_value(value, trust, now))
    return caught.value.reason


def test_a_signed_event_verifies_and_names_its_signer() -> None:
    event = _revoked("320412", "/registry/320412")
    value = _signed(event, "320412")
    assert verify_value(value, TRUST, NOW) == "320412"
    authority(parse_event(value), "320412")
    assert parse_event(value).signer == "320412-k"


def test_signatures_cover_the_whole_envelope_and_only_listed_keys_count() -> None:
    event = _revoked("320412", "/registry/320412")
    doc = orjson.loads(_signed(event, "320412"))
    for field, value in (("subject", "1" * 32), ("sequence", 2), ("signer", "440703-k")):
        assert _reason(orjson.dumps({**doc, field: value})) in ("bad_signature", "unknown_signer")
    doc["data"]["reason"] = "stolen"
    assert _reason(orjson.dumps(doc)) == "bad_signature"
    assert _reason(event.model_dump_json().encode()) == "unsigned"
    assert _reason(sign_value(event.model_dump_json().encode(), "nobody", KEYS["320412"])) == "unknown_signer"
    # key order and whitespace are not part of what is signed
    reordered = orjson.dumps(dict(reversed(list(orjson.loads(_signed(event, "320412")).items()))))
    assert verify_value(reordered, TRUST, NOW) == "320412"


def _batch(n: int) -> list[dict[str, Any]]:
    signed = sign_documents(
        [orjson.loads(_revoked("320412", "/registry/320412").model_dump_json()) for _ in range(n)],
        "320412-k",
        KEYS["320412"],
    )
    return [orjson.loads(v) for v in signed]


@pytest.mark.parametrize("size", [2, 3, 5, 8, 33])
def test_a_batch_under_one_signature_verifies_event_by_event(size: int) -> None:
    docs = _batch(size)
    assert len({d["signature"] for d in docs}) == 1  # one Ed25519 signature for the whole batch
    for d in docs:
        assert verify_value(orjson.dumps(d), TRUST, NOW) == "320412"
        authority(parse_event(orjson.dumps(d)), "320412")


@pytest.mark.parametrize("others_verified", [False, True])
def test_a_batch_member_altered_or_given_another_proof_is_refused(others_verified: bool) -> None:
    """Also once other members of the batch were verified: a path then climbs only to the first
    node they authenticated, and a forged member must still find none."""
    docs = _batch(5)
    if others_verified:  # every member but 1 and 2, whose leaves the checks below alter
        for d in (docs[0], docs[3], docs[4]):
            assert verify_value(orjson.dumps(d), TRUST, NOW) == "320412"
    altered = {**docs[2], "data": {**docs[2]["data"], "reason": "stolen"}}
    assert _reason(orjson.dumps(altered)) == "bad_signature"
    swapped = {**docs[1], "sigproof": docs[3]["sigproof"]}
    assert _reason(orjson.dumps(swapped)) == "bad_signature"
    # an event of another batch cannot borrow this batch's (already verified) signature and proof
    stranger = _batch(5)[1]
    borrowed = {**stranger, "signature": docs[1]["signature"], "sigproof": docs[1]["sigproof"]}
    assert _reason(orjson.dumps(borrowed)) == "bad_signature"
    for proof in ("", "X" + "A" * 43, "L" + "A" * 10, ",".join(["L" + "A" * 43] * 25), 7):
        with pytest.raises(Rejected) as caught:  # checked before parsing: a consumer does both
            verify_value(orjson.dumps({**docs[1], "sigproof": proof}), TRUST, NOW)
        assert caught.value.reason == "bad_signature"
    # a single event's signature cannot be turned into a batch's, nor the other way round
    single = orjson.loads(_signed(_revoked("320412", "/registry/320412"), "320412"))
    assert _reason(orjson.dumps({**single, "sigproof": docs[0]["sigproof"]})) == "bad_signature"
    assert _reason(orjson.dumps({k: v for k, v in docs[0].items() if k != "sigproof"})) == "bad_signature"
    # the untouched members verify, whether or not another member of theirs came first
    for d in docs:
        assert verify_value(orjson.dumps(d), TRUST, NOW) == "320412"


def test_a_key_outside_its_validity_is_refused() -> None:
    later = TrustList(
        divisions={
            "320412": DivisionTrust(signing_keys=[_entry("320412", not_before=NOW + dt.timedelta(days=1))])
        }
    )
    ended = TrustList(
        divisions={
            "320412": DivisionTrust(signing_keys=[_entry("320412", not_after=NOW - dt.timedelta(days=1))])
        }
    )
    value = _signed(_revoked("320412", "/registry/320412"), "320412")
    assert _reason(value, later) == "signer_not_valid"
    assert _reason(value, ended) == "signer_not_valid"


def test_the_authority_table() -> None:
    assert _reason(_signed(_revoked("440703", "/registry/440703"), "320412")) == "not_authorized"
    assert _reason(_signed(_revoked("440703", "/registry/320412"), "320412")) == "not_authorized"
    assert _reason(_signed(_revoked("320412", "/exchange"), "exchange")) == "not_authorized"
    feedback = {
        "notification_id": str(uuid.uuid4()),
        "from_division": "440703",
        "outcome": "applied",
        "applied_at": NOW.isoformat(),
    }
    assert _reason(_signed(_event("exchange.feedback.v1", "/registry/320412", feedback), "320412")) == (
        "not_authorized"
    )
    relayed = _signed(_event("exchange.feedback.v1", "/exchange", feedback), "exchange")
    authority(parse_event(relayed), verify_value(relayed, TRUST, NOW))  # the exchange relays REST answers
    answers = {
        "batch_id": str(uuid.uuid4()),
        "from_division": "440703",
        "answers": [{k: v for k, v in feedback.items() if k != "from_division"}],
    }
    for source, signer in (("/registry/320412", "320412"), ("/exchange", "exchange")):
        # another registry answering in its name, and the exchange, which relays answers one by one only
        forged = _signed(_event("exchange.feedback_batch.v1", source, answers), signer)
        assert _reason(forged) == "not_authorized"
    own = _signed(
        _event("exchange.feedback_batch.v1", "/registry/320412", {**answers, "from_division": "320412"}),
        "320412",
    )
    authority(parse_event(own), verify_value(own, TRUST, NOW))


def _vital(event_type: str, place: str, elsewhere: str) -> dict[str, Any]:
    """A valid payload of ``event_type`` recorded at ``place`` (``elsewhere``: the other division a
    move or a person names)."""
    woman = person_id("F")
    move = {
        "migration_id": str(uuid.uuid4()),
        "id_number": woman,
        "name": "王静",
        "migration_date": "2025-02-01",
    }
    birth = {
        "birth_id": str(uuid.uuid4()),
        "medical_certificate_number": "A123456789",
        "child_name": "王小静",
        "child_sex": "F",
        "child_birth_date": "2025-03-01",
        "mother_id_number": woman,
        "birth_order": 1,
    }
    return {
        "person.registered.v1": {
            "id_number": woman,
            "name": "王静",
            "sex": "F",
            "birth_date": f"{woman[6:10]}-{woman[10:12]}-{woman[12:14]}",
            "hukou_division": elsewhere,
            "residence_division": place,
        },
        "migration.departed.v1": {
            **move,
            "hukou_division": place,
            "from_division": place,
            "to_division": elsewhere,
        },
        "migration.arrived.v1": {
            **move,
            "hukou_division": elsewhere,
            "from_division": elsewhere,
            "to_division": place,
        },
        "migration.returned.v1": {
            **move,
            "hukou_division": place,
            "from_division": elsewhere,
            "to_division": place,
        },
        "marriage.registered.v1": {
            "marriage_id": str(uuid.uuid4()),
            "spouse_a_id_number": woman,
            "spouse_a_name": "王静",
            "spouse_b_id_number": person_id("M"),
            "spouse_b_name": "李强",
            "marriage_date": "2025-01-01",
            "registered_in": place,
        },
        "pregnancy.registered.v1": {
            "pregnancy_id": str(uuid.uuid4()),
            "mother_id_number": woman,
            "registered_in": place,
            "registered_on": "2025-01-01",
        },
        "birth.registered.v1": {**birth, "birth_division": place},
        "birth.registered.v2": {**birth, "birth_place": {"division": place, "kind": "hospital"}},
    }[event_type]


@pytest.mark.parametrize(
    "event_type",
    [
        "person.registered.v1",
        "migration.departed.v1",
        "migration.arrived.v1",
        "migration.returned.v1",
        "marriage.registered.v1",
        "pregnancy.registered.v1",
        "birth.registered.v1",
        "birth.registered.v2",
    ],
)
def test_a_vital_event_is_said_only_by_the_registry_where_it_is_recorded(event_type: str) -> None:
    """320412, with its own valid key, says what was recorded at 440703 and 110101 (it moves, or
    plants, another division's resident): refused. Recorded at 320412 itself, the same event passes."""
    lie = _signed(_event(event_type, "/registry/320412", _vital(event_type, "440703", "110101")), "320412")
    assert _reason(lie) == "not_authorized"
    own = _signed(_event(event_type, "/registry/320412", _vital(event_type, "320412", "440703")), "320412")
    authority(parse_event(own), verify_value(own, TRUST, NOW))


def test_an_issuer_speaks_only_of_the_certificates_it_numbered() -> None:
    """320412 names itself as issuer but revokes 440703's certificate number: refused."""
    revoked = _revoked("320412", "/registry/320412")
    lie = revoked.model_copy(
        update={"data": revoked.data.model_copy(update={"certificate_number": "440703-2026-ABCDEFGH"})}
    )
    assert _reason(_signed(lie, "320412")) == "not_authorized"


def test_an_event_is_announced_only_under_its_persons_key() -> None:
    """320412 says an arrival of a person it knows under the key of another it only saw on a
    topic (to have her notifications routed to itself): refused where the secret is held."""
    secret = b"k" * 32
    check = bound_to_subject(secret)
    data = _vital("migration.arrived.v1", "320412", "440703")
    own = _event("migration.arrived.v1", "/registry/320412", data)
    own = own.model_copy(update={"subject": subject_key(data["id_number"], secret)})
    check(parse_event(_signed(own, "320412")), "320412")
    lie = own.model_copy(update={"subject": subject_key(person_id("F"), secret)})
    with pytest.raises(Rejected) as caught:
        check(parse_event(_signed(lie, "320412")), "320412")
    assert caught.value.reason == "not_authorized"
    marriage = _vital("marriage.registered.v1", "320412", "440703")
    for spouse in ("spouse_a_id_number", "spouse_b_id_number"):  # announced once under each key
        under = _event("marriage.registered.v1", "/registry/320412", marriage)
        under = under.model_copy(update={"subject": subject_key(marriage[spouse], secret)})
        check(parse_event(_signed(under, "320412")), "320412")


def test_a_sealed_payload_opens_for_its_addressee_and_its_notification_only() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    target, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    raw = target.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    aad = notification_aad(uuid.uuid4(), "320412", "pregnancy.registered.v1")
    sealed = seal(b'{"mother_id_number": "x"}', "320412-enc", raw, aad)
    assert b"mother" not in orjson.dumps(sealed.model_dump())
    assert open_sealed(sealed, {"320412-enc": target}, aad) == b'{"mother_id_number": "x"}'
    for keys, bound in (
        ({"320412-enc": other}, aad),
        ({"another-kid": target}, aad),
        ({"320412-enc": target}, notification_aad(uuid.uuid4(), "320412", "pregnancy.registered.v1")),
    ):
        with pytest.raises(CannotOpen):
            open_sealed(sealed, keys, bound)
    second = seal(b"{}", "320412-enc", raw, aad)
    assert second.nonce != sealed.nonce


def test_a_restricted_notification_names_the_neutral_category_and_seals_its_type() -> None:
    """A pregnancy notification names ``vital.restricted`` and no withheld field in clear; the seal
    holds its real type, and under the neutral name only a restricted type is taken. Any other
    notification keeps its type and withheld fields in clear and seals its bare payload."""
    named = notification_named("pregnancy.closed.v1", ["outcome"], {"pregnancy_id": "x"})
    assert named == (NEUTRAL_CATEGORY, [])
    assert notification_named("person.registered.v1", ["sex"], {"name": "x"}) == (
        "person.registered.v1",
        ["sex"],
    )
    sealed = notification_plaintext("pregnancy.closed.v1", ["outcome"], {"pregnancy_id": "x"})
    assert notification_contents(sealed, *named) == (
        "pregnancy.closed.v1",
        ["outcome"],
        {"pregnancy_id": "x"},
    )
    plain = notification_plaintext("person.registered.v1", ["sex"], {"name": "x"})
    assert orjson.loads(plain) == {"name": "x"}
    assert notification_contents(plain, "person.registered.v1", ["sex"]) == (
        "person.registered.v1",
        ["sex"],
        {"name": "x"},
    )
    for inside, withheld in (
        (notification_plaintext("person.registered.v1", [], {"name": "x"}), []),  # a bare payload
        (orjson.dumps({"event_type": "person.registered.v1", "withheld_fields": [], "payload": {}}), []),
        (sealed, ["outcome"]),  # a neutral notification names no withheld field in clear
    ):
        with pytest.raises(CannotOpen):
            notification_contents(inside, NEUTRAL_CATEGORY, withheld)


def test_a_correction_of_a_pregnancy_is_named_and_sealed_as_the_pregnancy_is() -> None:
    """A correction is restricted by what it corrects (``is_restricted``): of a pregnancy, it names
    the neutral category and seals its type and withheld fields, and under the neutral name it is
    taken; a correction of anything else keeps its type in clear, and sealed under the neutral name
    is refused. A pregnancy's correction named by its own type (from an exchange not yet upgraded)
    is still read as it is named."""
    of_pregnancy = {"record_type": "pregnancy", "changes": {"expected_delivery": "2026-10-27"}}
    of_birth = {"record_type": "birth", "changes": {"name": "x"}}
    kind = "record.corrected.v1"
    named = notification_named(kind, ["reason"], of_pregnancy)
    assert named == (NEUTRAL_CATEGORY, [])
    assert notification_named(kind, ["reason"], of_birth) == (kind, ["reason"])
    sealed = notification_plaintext(kind, ["reason"], of_pregnancy)
    assert notification_contents(sealed, *named) == (kind, ["reason"], of_pregnancy)
    assert orjson.loads(notification_plaintext(kind, [], of_birth)) == of_birth
    old = orjson.dumps(of_pregnancy)  # sealed bare, under its own type
    assert notification_contents(old, kind, []) == (kind, [], of_pregnancy)
    for inside in (
        orjson.dumps({"event_type": kind, "withheld_fields": [], "payload": of_birth}),
        orjson.dumps({"event_type": kind, "withheld_fields": [], "payload": {"changes": {}}}),
        orjson.dumps({"event_type": NEUTRAL_CATEGORY, "withheld_fields": [], "payload": of_pregnancy}),
    ):
        with pytest.raises(CannotOpen):
            notification_contents(inside, NEUTRAL_CATEGORY, [])


def test_key_urls_are_bound_to_divisions_and_https_outside_the_cluster() -> None:
    assert bound_key_url("https://registry.example.gov/v1/keys", "production")
    assert bound_key_url("http://registry-main.exchange.svc:8000/v1/keys", "production")
    assert bound_key_url("http://127.0.0.1:8001/v1/keys", "development")
    for url, env in (
        ("http://registry.example.gov/v1/keys", "production"),
        ("http://127.0.0.1/k", "production"),
    ):
        with pytest.raises(ValueError):
            bound_key_url(url, env)
    settings = VerificationSettings(
        registry_key_urls="320412+110101=https://a/v1/keys,440703=https://b/v1/keys"
    )
    assert settings.key_sources == {
        "https://a/v1/keys": frozenset({"320412", "110101"}),
        "https://b/v1/keys": frozenset({"440703"}),
    }
    production = production_settings(status_list_signing_key="A" * 43)
    VerificationSettings(registry_key_urls="320412=https://a/v1/keys", **production)
    for bad in ("https://a/v1/keys", "320412=http://registry.example.gov/v1/keys"):
        with pytest.raises(ValidationError, match=r"REGISTRY_KEY_URLS|https outside the cluster"):
            VerificationSettings(registry_key_urls=bad, **production)
