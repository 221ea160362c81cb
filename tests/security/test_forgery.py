"""Forged and altered events, produced with a plain Kafka client (not the project's producer).

An outsider reaching the broker, or a jurisdiction speaking beyond its authority, tries one kind
of forgery per test. Each must be dead-lettered by every consumer it reaches, with its reason,
counted in ``events_rejected_total``, and have no effect anywhere.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import DESTINATION, ORIGIN, Stack
from shared import signing
from shared.events.catalog import spec_for
from shared.events.envelope import Envelope, new_event_id
from shared.events.signature import sign_documents, sign_value
from shared.identity import subject_key
from tests.helpers import Api, person_id, query, signed, signed_bytes, wait_until

pytestmark = pytest.mark.e2e
EXCHANGE_CONSUMER = "migrant-exchange-events"
NO_REGISTRY = "510104"  # a jurisdiction without a registry: its notifications stay pending


def _envelope(event_type: str, source: str, data: dict[str, Any], subject: str, **ext: Any) -> Envelope[Any]:
    spec = spec_for(event_type)
    return Envelope[spec.payload](  # type: ignore[name-defined]
        id=new_event_id(),
        source=source,
        type=event_type,
        subject=subject,
        time=dt.datetime.now(dt.UTC),
        dataschema=spec.dataschema,
        sequence=1,
        data=spec.payload.model_validate(data),
        **ext,
    )


def _person(stack: Stack, producer: str, residence: str | None = None) -> tuple[str, Envelope[Any]]:
    n = person_id("F")
    data = {
        "id_number": n,
        "name": "伪造",
        "sex": "F",
        "birth_date": f"{n[6:10]}-{n[10:12]}-{n[12:14]}",
        "hukou_division": ORIGIN,
        "residence_division": residence or DESTINATION,
    }
    subject = subject_key(n, stack.subject_secret.encode())
    return n, _envelope("person.registered.v1", f"/registry/{producer}", data, subject, origin=ORIGIN)


def _produce(stack: Stack, topic: str, value: bytes, key: str) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key.encode())
        finally:
            await producer.stop()

    asyncio.run(run())


def _rejected(stack: Stack, service: str, consumer: str, reason: str) -> float:
    text = httpx.get(stack.service(service).url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "events_rejected_total"
                and sample.labels.get("consumer") == consumer
                and sample.labels.get("reason") == reason
            ):
                return float(sample.value)
    return 0.0


def _dead_letter(stack: Stack, service: str, event_id: uuid.UUID, consumers: int = 1) -> str:
    """The reason a service dead-lettered the event with this id, once per consumer reading it."""

    def letters() -> list[Any]:
        return query(
            stack.service(service).dsn,
            "SELECT consumer, reason FROM dead_letters WHERE convert_from(value, 'UTF8') LIKE $1",
            f'%"id":"{event_id}"%',
        )

    rows = wait_until(lambda: len(found := letters()) >= consumers and found, timeout=15)
    assert len({r["consumer"] for r in rows}) == len(rows) == consumers, rows
    return str(rows[0]["reason"])


class Rejection:
    """The rejection counter of one consumer and reason, before and after a forgery."""

    def __init__(self, stack: Stack, service: str, consumer: str, reason: str):
        self.stack, self.service, self.consumer, self.reason = stack, service, consumer, reason
        self.before = _rejected(stack, service, consumer, reason)

    def counted(self) -> bool:
        return _rejected(self.stack, self.service, self.consumer, self.reason) >= self.before + 1


def _exchange_saw_nothing(stack: Stack, event: Envelope[Any]) -> None:
    exchange = stack.service("migrant_exchange").dsn
    assert not query(exchange, "SELECT 1 FROM notifications WHERE event_id = $1", event.id)
    assert not query(exchange, "SELECT 1 FROM roster WHERE subject = $1", event.subject)
    assert not query(exchange, "SELECT 1 FROM inbox WHERE event_id = $1", event.id)


def _forge_vital(stack: Stack, value: bytes, event: Envelope[Any], reason: str) -> str:
    counter = Rejection(stack, "migrant_exchange", EXCHANGE_CONSUMER, reason)
    _produce(stack, "vital.person.v1", value, event.subject)
    why = _dead_letter(stack, "migrant_exchange", event.id)
    wait_until(counter.counted, timeout=5)
    _exchange_saw_nothing(stack, event)
    return why


def test_an_unsigned_event_is_refused(stack: Stack) -> None:
    _, event = _person(stack, ORIGIN)
    why = _forge_vital(stack, event.model_dump_json().encode(), event, "unsigned")
    assert why.startswith("rejected: unsigned")


def test_an_event_signed_by_an_unknown_key_is_refused(stack: Stack) -> None:
    _, event = _person(stack, ORIGIN)
    value = sign_value(event.model_dump_json().encode(), f"{ORIGIN}-evt-rogue", signing.new_private_key())
    why = _forge_vital(stack, value, event, "unknown_signer")
    assert why.startswith("rejected: unknown_signer")


def test_a_jurisdiction_cannot_speak_for_another(stack: Stack) -> None:
    _, event = _person(stack, DESTINATION)  # claims /registry/440703 ...
    value = signed_bytes(stack, ORIGIN, event.model_dump_json().encode())  # ... signed by 320412
    why = _forge_vital(stack, value, event, "not_authorized")
    assert why.startswith("rejected: not_authorized") and f"claims source /registry/{DESTINATION}" in why


ROSTER_RESIDENCE = "SELECT residence_division FROM roster WHERE subject = $1"


def _destination_resident(stack: Stack) -> tuple[str, str]:
    """A woman registered at the destination, once the exchange's roster knows her: her identity
    number and subject key."""
    n = person_id("F")
    person = {"id_number": n, "name": "王静", "sex": "F", "birth_date": f"{n[6:10]}-{n[10:12]}-{n[12:14]}"}
    r = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}").post(
        "/v1/persons", {**person, "hukou_division": DESTINATION}
    )
    assert r.status_code == 201, r.text
    subject = subject_key(n, stack.subject_secret.encode())
    wait_until(lambda: query(stack.service("migrant_exchange").dsn, ROSTER_RESIDENCE, subject), timeout=15)
    return n, subject


def _move_refused(stack: Stack, event: Envelope[Any], why_contains: str) -> None:
    """The origin's validly signed move is dead-lettered as not authorized, routes nothing, and the
    exchange still has its subject living at the destination."""
    counter = Rejection(stack, "migrant_exchange", EXCHANGE_CONSUMER, "not_authorized")
    _produce(stack, "vital.migration.v1", signed(stack, event), event.subject)
    why = _dead_letter(stack, "migrant_exchange", event.id)
    assert why.startswith("rejected: not_authorized") and why_contains in why, why
    wait_until(counter.counted, timeout=5)
    exchange = stack.service("migrant_exchange").dsn
    assert not query(exchange, "SELECT 1 FROM notifications WHERE event_id = $1", event.id)
    assert query(exchange, ROSTER_RESIDENCE, event.subject)[0]["residence_division"] == DESTINATION


def _move(n: str, frm: str, to: str) -> dict[str, Any]:
    return {
        "migration_id": str(uuid.uuid4()),
        "id_number": n,
        "name": "王静",
        "migration_date": "2025-02-01",
        "hukou_division": DESTINATION,
        "from_division": frm,
        "to_division": to,
    }


def test_a_registry_cannot_move_another_divisions_resident(stack: Stack) -> None:
    """The origin registry, with its own valid key, says that a resident of the destination left
    it for a third division (a departure is said where the person leaves from)."""
    n, subject = _destination_resident(stack)
    data = _move(n, DESTINATION, NO_REGISTRY)
    event = _envelope("migration.departed.v1", f"/registry/{ORIGIN}", data, subject, origin=DESTINATION)
    _move_refused(stack, event, "recorded at another division")


def test_a_registry_cannot_take_a_person_over_by_her_subject_key(stack: Stack) -> None:
    """The origin registry saw a resident of the destination's pseudonymous key on a topic, not
    her identity number: it says an arrival here of someone else under her key, to have her
    notifications sent to itself."""
    _, subject = _destination_resident(stack)
    data = _move(person_id("F"), DESTINATION, ORIGIN)
    event = _envelope("migration.arrived.v1", f"/registry/{ORIGIN}", data, subject, origin=DESTINATION)
    _move_refused(stack, event, "not its person's key")


def test_data_altered_after_signing_is_refused(stack: Stack) -> None:
    _, event = _person(stack, ORIGIN)
    doc = orjson.loads(signed(stack, event))
    doc["data"]["name"] = "篡改"  # the signature still travels with the event
    why = _forge_vital(stack, orjson.dumps(doc), event, "bad_signature")
    assert why.startswith("rejected: bad_signature")


def test_a_batch_under_one_signature_is_applied_and_a_member_altered_is_refused(stack: Stack) -> None:
    """A relay signs a batch once (a Merkle root); a member altered after signing is refused while
    its batch-mates, already met under the same signature, are applied."""
    people = [_person(stack, ORIGIN) for _ in range(4)]
    signer = stack.trust.keyring(ORIGIN).signing_key(ORIGIN, dt.datetime.now(dt.UTC))
    assert signer is not None
    docs = [orjson.loads(v) for v in sign_documents([e.model_dump(mode="json") for _, e in people], *signer)]
    assert len({d["signature"] for d in docs}) == 1 and all(d["sigproof"] for d in docs)
    for doc, (_, event) in zip(docs[:3], people[:3], strict=True):
        _produce(stack, "vital.person.v1", orjson.dumps(doc), event.subject)
    exchange = stack.service("migrant_exchange").dsn
    wait_until(
        lambda: all(
            query(exchange, "SELECT 1 FROM roster WHERE subject = $1", e.subject) for _, e in people[:3]
        )
    )
    altered, event = docs[3], people[3][1]
    altered["data"]["name"] = "篡改"
    why = _forge_vital(stack, orjson.dumps(altered), event, "bad_signature")
    assert why.startswith("rejected: bad_signature")


def test_a_certificate_event_carrying_a_key_teaches_nobody_that_key(stack: Stack) -> None:
    """Even signed by the issuer's own event key: keys come only from the issuer's key URL."""
    holder = person_id("F")
    rogue = signing.new_private_key()
    kid = f"{ORIGIN}-rogue-{uuid.uuid4().hex[:6]}"
    number = f"{ORIGIN}-2026-{uuid.uuid4().hex[:8].upper()}"
    claims = {"iss": ORIGIN, "num": number, "sub": "0" * 32, "name": "假冒", "sti": 999_999}
    token = signing.sign(claims, rogue, kid)
    data = {
        "certificate_number": number,
        "holder_id_number": holder,
        "holder_name": "假冒",
        "marital_status": "married",
        "children_birth_dates": [],
        "issuer": ORIGIN,
        "issued_on": dt.date.today().isoformat(),
        "valid_until": (dt.date.today() + dt.timedelta(days=180)).isoformat(),
        "key_id": kid,
        "status_index": 999_999,
        "token": token,
        "public_key_jwk": signing.jwk(kid, signing.public_bytes(rogue)),
    }
    subject = subject_key(holder, stack.subject_secret.encode())
    event = _envelope("certificate.issued.v1", f"/registry/{ORIGIN}", data, subject)
    counters = [
        Rejection(stack, "verification", "verification", "not_authorized"),
        Rejection(stack, "migrant_exchange", EXCHANGE_CONSUMER, "not_authorized"),
        Rejection(stack, "migrant_exchange", "migrant-exchange-indicators", "not_authorized"),
    ]
    _produce(stack, "certificate.lifecycle.v1", signed(stack, event), subject)
    assert "certificate events carry no keys" in _dead_letter(stack, "verification", event.id)
    assert "certificate events carry no keys" in _dead_letter(stack, "migrant_exchange", event.id, 2)
    wait_until(lambda: all(c.counted() for c in counters), timeout=5)

    verification = stack.service("verification")
    assert not query(verification.dsn, "SELECT 1 FROM certificates WHERE number = $1", number)
    assert not query(verification.dsn, "SELECT 1 FROM issuer_keys WHERE kid = $1", kid)
    published = httpx.get(verification.url + "/v1/keys", timeout=5).json()["keys"]
    assert kid not in {k["kid"] for k in published}
    kiosk = Api(stack, "verification", f"kiosk-{DESTINATION}")
    answer = kiosk.post("/v1/verifications/token", {"token": token, "purpose": "benefits"}).json()
    assert answer["result"] == "invalid_signature"
    exchange = stack.service("migrant_exchange").dsn
    assert not query(exchange, "SELECT 1 FROM inbox WHERE event_id = $1", event.id)


def _notification(target: str, payload_event: Envelope[Any]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "notification_id": str(uuid.uuid4()),
        "target_division": target,
        "source_division": DESTINATION,
        "event_id": str(payload_event.id),
        "event_type": payload_event.type,
        "event_sequence": 1,
        "event_time": now.isoformat(),
        "deadline": (now + dt.timedelta(days=7)).isoformat(),
        "payload": payload_event.data.model_dump(mode="json"),
    }


def test_a_notification_not_from_the_exchange_is_refused(stack: Stack) -> None:
    n, person = _person(stack, DESTINATION)
    data = _notification(ORIGIN, person)
    event = _envelope(
        "exchange.notification.v1",
        f"/registry/{DESTINATION}",  # a registry posing as the exchange, with its own valid key
        data,
        person.subject,
        origin=DESTINATION,
        destination=ORIGIN,
    )
    registry = f"registry-{ORIGIN}"
    counter = Rejection(stack, registry, f"registry-{ORIGIN}", "not_authorized")
    _produce(stack, "exchange.notification.v1", signed(stack, event), f"{ORIGIN}:{event.subject}")
    why = _dead_letter(stack, registry, event.id)
    assert "notifications come only from the exchange" in why
    wait_until(counter.counted, timeout=5)
    assert not query(stack.service(registry).dsn, "SELECT 1 FROM persons WHERE id_number = $1", n)
    assert not query(stack.service(registry).dsn, "SELECT 1 FROM inbox WHERE event_id = $1", event.id)


def _woman_of_origin_living_unregistered(stack: Stack) -> tuple[str, str]:
    """A woman registered at the origin (her hukou) who lives at 510104, a division with no
    registry on Kafka: her identity number and subject key."""
    n = person_id("F")
    body = {
        "id_number": n,
        "name": "王静",
        "sex": "F",
        "birth_date": f"{n[6:10]}-{n[10:12]}-{n[12:14]}",
        "hukou_division": ORIGIN,
        "residence_division": NO_REGISTRY,
    }
    assert Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}").post("/v1/persons", body).status_code == 201
    return n, subject_key(n, stack.subject_secret.encode())


@pytest.mark.parametrize("way", ["alone", "in a batch"])
def test_feedback_not_from_the_target_is_refused(stack: Stack, way: str) -> None:
    """440703 answers, signed with its own key, a notification addressed to 510104: alone, or
    beside an answer of its own in a batch of answers (the whole batch is refused)."""
    _, subject = _woman_of_origin_living_unregistered(stack)
    exchange = stack.service("migrant_exchange").dsn
    [pending] = wait_until(
        lambda: query(
            exchange,
            "SELECT id, state FROM notifications WHERE subject = $1 AND target_division = $2",
            subject,
            NO_REGISTRY,
        ),
        timeout=15,
    )
    assert pending["state"] == "pending"
    data = {
        "notification_id": str(pending["id"]),
        "from_division": DESTINATION,  # 440703 answers a notification addressed to 510104
        "outcome": "applied",
        "applied_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    event = _envelope("exchange.feedback.v1", f"/registry/{DESTINATION}", data, subject, origin=DESTINATION)
    if way == "in a batch":
        own = {**data, "notification_id": str(uuid.uuid4())}
        batch = {
            "batch_id": str(uuid.uuid4()),
            "from_division": DESTINATION,
            "answers": [{k: v for k, v in a.items() if k != "from_division"} for a in (own, data)],
        }
        subject = uuid.UUID(batch["batch_id"]).hex
        event = _envelope(
            "exchange.feedback_batch.v1", f"/registry/{DESTINATION}", batch, subject, origin=DESTINATION
        )
    counter = Rejection(stack, "migrant_exchange", EXCHANGE_CONSUMER, "not_authorized")
    _produce(stack, "exchange.feedback.v1", signed(stack, event), subject)
    why = _dead_letter(stack, "migrant_exchange", event.id)
    assert "not addressed to" in why
    wait_until(counter.counted, timeout=5)
    [after] = query(exchange, "SELECT state, feedback_at FROM notifications WHERE id = $1", pending["id"])
    assert after["state"] == "pending" and after["feedback_at"] is None


def test_a_correction_of_a_record_the_corrector_does_not_own_changes_nothing(stack: Stack) -> None:
    """440703 corrects a certificate 320412 issued: verification refuses it (dead letter), and
    the origin registry, notified by the exchange, answers ``conflict`` and keeps its record."""
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    holder = person_id("F")
    body = {
        "id_number": holder,
        "name": "陈静",
        "sex": "F",
        "birth_date": f"{holder[6:10]}-{holder[10:12]}-{holder[12:14]}",
        "hukou_division": ORIGIN,
        "residence_division": DESTINATION,
    }
    assert origin.post("/v1/persons", body).status_code == 201
    cert = origin.post("/v1/certificates", {"holder_id_number": holder}).json()
    number = cert["certificate_number"]
    verification = stack.service("verification").dsn
    wait_until(lambda: query(verification, "SELECT 1 FROM certificates WHERE number = $1", number), 15)
    subject = subject_key(holder, stack.subject_secret.encode())
    data = {
        "correction_id": str(uuid.uuid4()),
        "corrected_event_id": str(uuid.uuid4()),
        "record_type": "certificate",
        "record_id": number,
        "changes": {"holder_name": "改名", "children_count": 5},
        "reason": "a correction by a jurisdiction that did not issue it",
    }
    event = _envelope(
        "record.corrected.v1",
        f"/registry/{DESTINATION}",
        data,
        subject,
        origin=ORIGIN,
        destination=DESTINATION,
    )
    counter = Rejection(stack, "verification", "verification", "not_authorized")
    _produce(stack, "vital.correction.v1", signed(stack, event), subject)
    why = _dead_letter(stack, "verification", event.id)
    assert "corrects a certificate of another issuer" in why
    wait_until(counter.counted, timeout=5)
    [row] = query(
        verification, "SELECT holder_name, children_count FROM certificates WHERE number = $1", number
    )
    assert row["holder_name"] == "陈静" and row["children_count"] != 5

    # The origin registry owns the certificate: the exchange's notification is answered conflict.
    exchange = stack.service("migrant_exchange").dsn
    [note] = wait_until(
        lambda: query(
            exchange,
            "SELECT state, reason FROM notifications WHERE event_id = $1 AND target_division = $2 "
            "AND state <> 'pending'",
            event.id,
            ORIGIN,
        ),
        timeout=15,
    )
    assert note["state"] == "conflict" and "not the correcting jurisdiction's" in note["reason"]
    held = query(
        stack.service(f"registry-{ORIGIN}").dsn,
        "SELECT holder_name FROM certificates WHERE number = $1",
        number,
    )
    assert held[0]["holder_name"] == "陈静"
    assert not query(
        stack.service(f"registry-{ORIGIN}").dsn, "SELECT 1 FROM corrections WHERE record_id = $1", number
    )


def test_a_registry_cannot_dissolve_a_marriage_it_does_not_hold(stack: Stack) -> None:
    """The origin registers a marriage of two of its residents, one of whom lives at 510104 (which
    is sent it). The destination, with its own valid key and both spouses' identity numbers, says
    the marriage was dissolved: a registry ends only a record in its own records, and it never held
    this one. The exchange refuses it (dead letter), and the origin's marriage stays as it was."""
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    spouses = {}
    for field, sex, lives in (("spouse_a_id_number", "M", ORIGIN), ("spouse_b_id_number", "F", NO_REGISTRY)):
        n = spouses[field] = person_id(sex)
        born = f"{n[6:10]}-{n[10:12]}-{n[12:14]}"
        body = {"id_number": n, "name": "李婚", "sex": sex, "birth_date": born, "hukou_division": ORIGIN}
        assert origin.post("/v1/persons", {**body, "residence_division": lives}).status_code == 201
    r = origin.post("/v1/marriages", {**spouses, "marriage_date": "2024-05-01"})
    assert r.status_code == 201, r.text
    marriage_id = r.json()["marriage_id"]
    exchange = stack.service("migrant_exchange").dsn
    held = "SELECT division FROM record_holders WHERE record_type = 'marriage' AND record_id = $1"
    wait_until(lambda: len(query(exchange, held, uuid.UUID(marriage_id))) == 2, timeout=15)

    data = {"marriage_id": marriage_id, **spouses, "dissolution_date": "2025-01-02", "reason": "divorce"}
    subject = subject_key(spouses["spouse_a_id_number"], stack.subject_secret.encode())
    event = _envelope("marriage.dissolved.v1", f"/registry/{DESTINATION}", data, subject, origin=ORIGIN)
    counter = Rejection(stack, "migrant_exchange", EXCHANGE_CONSUMER, "not_authorized")
    _produce(stack, "vital.marriage.v1", signed(stack, event), subject)
    why = _dead_letter(stack, "migrant_exchange", event.id)
    assert why.startswith("rejected: not_authorized") and "does not hold" in why, why
    wait_until(counter.counted, timeout=5)
    assert not query(exchange, "SELECT 1 FROM notifications WHERE event_id = $1", event.id)
    assert {r["division"] for r in query(exchange, held, uuid.UUID(marriage_id))} == {ORIGIN, NO_REGISTRY}
    [kept] = query(
        stack.service(f"registry-{ORIGIN}").dsn,
        "SELECT dissolution_date FROM marriages WHERE id = $1",
        uuid.UUID(marriage_id),
    )
    assert kept["dissolution_date"] is None


def _disclosure(person: Envelope[Any], discloser: str, source: str) -> Envelope[Any]:
    data = {
        "disclosure_id": str(uuid.uuid4()),
        "record_at": [ORIGIN],
        "discloser": discloser,
        "action": "certificate.verified",
        "recipient": "kiosk-440703",
        "recipient_division": DESTINATION,
        "purpose": "benefits",
        "disclosed_at": dt.datetime.now(dt.UTC).isoformat(),
        "certificate_number": f"{ORIGIN}-2026-FORGED00",
        "issuer": ORIGIN,
        "result": "valid",
    }
    return _envelope("disclosure.recorded.v1", source, data, person.subject)


def test_a_disclosure_is_reported_only_by_the_party_that_disclosed(stack: Stack) -> None:
    """A registry cannot put a check it did not make into another registry's subject-access log."""
    _, person = _person(stack, ORIGIN)
    forged = _disclosure(person, "verification", f"/registry/{DESTINATION}")  # signed by 440703
    _refused_at_origin(stack, forged, person, f"{DESTINATION} reports a disclosure by verification")


def _refused_at_origin(stack: Stack, forged: Envelope[Any], person: Envelope[Any], reason: str) -> None:
    """The origin registry dead-letters the forged disclosure event for ``reason``, counts the
    refusal, and its subject-access log has nothing about the person."""
    registry = f"registry-{ORIGIN}"
    counter = Rejection(stack, registry, f"registry-{ORIGIN}-disclosures", "not_authorized")
    _produce(stack, "audit.disclosure.v1", signed(stack, forged), forged.subject)
    why = _dead_letter(stack, registry, forged.id)
    assert reason in why
    wait_until(counter.counted, timeout=5)
    assert not query(
        stack.service(registry).dsn, "SELECT 1 FROM audit_log WHERE subject = $1", person.subject
    )


def test_a_batch_of_disclosures_is_reported_only_by_the_party_that_disclosed(stack: Stack) -> None:
    """The exchange reports the notifications it routed as batches of disclosures; a registry that
    signs such a batch in the exchange's name puts nothing into another registry's log."""
    _, person = _person(stack, ORIGIN)
    entry = _disclosure(person, "exchange", "/exchange").data.model_dump(
        mode="json", exclude={"record_at", "discloser"}, exclude_none=True
    )
    data = {
        "batch_id": str(uuid.uuid4()),
        "record_at": [ORIGIN],
        "discloser": "exchange",
        "entries": [entry | {"subject": person.subject, "action": "notification.sent"}],
    }
    forged = _envelope("disclosure.batch.v1", f"/registry/{DESTINATION}", data, uuid.uuid4().hex)
    _refused_at_origin(stack, forged, person, f"{DESTINATION} reports a disclosure by exchange")


def test_verification_says_nothing_but_disclosures(stack: Stack) -> None:
    """Verification's event key signs its disclosure events; a vital event under it is refused."""
    _, event = _person(stack, ORIGIN)
    doc = orjson.loads(event.model_dump_json())
    doc["source"] = "/verification"
    value = signed_bytes(stack, "verification", orjson.dumps(doc))
    event = Envelope[spec_for("person.registered.v1").payload].model_validate(doc)  # type: ignore[misc]
    why = _forge_vital(stack, value, event, "not_authorized")
    assert "verification reports disclosures only" in why


def test_a_registry_cannot_register_the_pregnancy_of_a_woman_not_its_own(stack: Stack) -> None:
    """The origin registers a woman whose hukou is there and who lives at 510104: her two
    registries. The destination, with its own valid key and her identity number, skips its own
    route (which refuses her: ``registered-at-hukou-or-residence``) and publishes her pregnancy as
    registered there. The exchange refuses it (dead letter): no notification to her registries, no
    holder of the pregnancy, nothing at the origin."""
    n, subject = _woman_of_origin_living_unregistered(stack)
    exchange = stack.service("migrant_exchange").dsn
    wait_until(lambda: query(exchange, ROSTER_RESIDENCE, subject), timeout=15)

    pregnancy_id = uuid.uuid4()
    data = {
        "pregnancy_id": str(pregnancy_id),
        "mother_id_number": n,
        "registered_in": DESTINATION,  # its own division: the envelope's check passes
        "registered_on": dt.date.today().isoformat(),
    }
    event = _envelope(
        "pregnancy.registered.v1",
        f"/registry/{DESTINATION}",
        data,
        subject,
        origin=ORIGIN,
        destination=DESTINATION,
    )
    counter = Rejection(stack, "migrant_exchange", EXCHANGE_CONSUMER, "not_authorized")
    _produce(stack, "vital.pregnancy.v1", signed(stack, event), subject)
    why = _dead_letter(stack, "migrant_exchange", event.id)
    assert why.startswith("rejected: not_authorized") and "neither her hukou nor her residence" in why, why
    wait_until(counter.counted, timeout=5)
    assert not query(exchange, "SELECT 1 FROM notifications WHERE event_id = $1", event.id)
    assert not query(exchange, "SELECT 1 FROM record_holders WHERE record_id = $1", pregnancy_id)
    assert query(exchange, ROSTER_RESIDENCE, subject)[0]["residence_division"] == NO_REGISTRY
    registry = stack.service(f"registry-{ORIGIN}").dsn
    assert not query(registry, "SELECT 1 FROM pregnancies WHERE id = $1", pregnancy_id)
