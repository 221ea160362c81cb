"""The published contracts: generated from the catalog, current in docs/, and able to refuse.

And the one schema evolution so far, ``birth.registered.v1`` -> ``v2``: its upcaster, signatures
checked over the bytes as received, and agreements written for v1 still holding for v2.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.migrant_exchange.domain.routing import covers
from shared import agreements, signing
from shared.events import payloads as p
from shared.events.catalog import CATALOG, CURRENT_TYPES, DLQ_SUFFIX, TOPICS, parse_event, spec_for
from shared.events.contracts import asyncapi_document, payload_schema, stale
from shared.events.envelope import Envelope, new_event_id
from shared.events.restriction import restrict
from shared.events.signature import authority, canonical, sign_document, verify_value
from shared.events.upcasting import UPCASTERS, current_type, upcast_data
from shared.kafka import all_topics
from shared.outbox_relay import OutboxRelay
from shared.settings import BaseServiceSettings
from shared.trust import DivisionTrust, PublicKey, TrustList
from tests.contracts_kit import check_recorded, event_problems, published_validators
from tests.helpers import person_id, production_settings

MOTHER = person_id("F")


def _birth_v1(**over: Any) -> dict[str, Any]:
    return {
        "birth_id": str(uuid.uuid4()),
        "medical_certificate_number": "O440123456",
        "child_name": "李小明",
        "child_sex": "M",
        "child_birth_date": "2025-09-01",
        "mother_id_number": MOTHER,
        "birth_order": 1,
        "birth_division": "440703",
        **over,
    }


def _envelope(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    spec = spec_for(event_type)
    return {
        "specversion": "1.0",
        "id": str(new_event_id()),
        "source": "/registry/440703",
        "type": event_type,
        "subject": "a" * 32,
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": spec.dataschema,
        "sequence": 1,
        "data": data,
    }


def test_docs_hold_what_the_models_generate() -> None:
    assert stale() == [], "docs/contracts is stale: run `make contracts` and commit the result"


def test_every_catalog_type_has_a_published_schema_named_by_its_dataschema() -> None:
    validators = published_validators()
    for event_type, spec in CATALOG.items():
        assert spec.dataschema in validators, event_type
        assert validators[spec.dataschema].schema == orjson.loads(orjson.dumps(payload_schema(event_type)))
        assert validators[spec.dataschema].schema["x-topic"] == spec.topic


def test_the_asyncapi_document_has_every_topic_and_dead_letter_queue_the_broker_gets() -> None:
    doc = asyncapi_document()
    assert {c["address"] for c in doc["channels"].values()} == set(all_topics())
    for topic in TOPICS:
        on_topic = {t for t, s in CATALOG.items() if s.topic == topic}
        assert set(doc["channels"][topic]["messages"]) == on_topic
        assert set(doc["channels"][topic + DLQ_SUFFIX]["messages"]) == {"deadLetter"}
    for event_type in CATALOG:
        closed = doc["components"]["messages"][event_type]["payload"]["allOf"][1]["properties"]
        assert closed["type"] == {"const": event_type}
        name = closed["data"]["$ref"].rsplit("/", 1)[-1]
        assert name in doc["components"]["schemas"], event_type


def test_a_model_built_event_keeps_its_contract_and_a_broken_one_is_named() -> None:
    v1 = {k: v for k, v in _birth_v1().items() if k != "birth_division"}
    data = p.BirthRegisteredV2(**v1, birth_place={"division": "440703", "kind": "home"})
    good = _envelope("birth.registered.v2", data.model_dump(mode="json"))
    assert event_problems(good) == []
    wrong = {**good, "data": {**good["data"], "birth_place": {"division": "440703", "kind": "barn"}}}
    assert any("birth_place.kind" in e and "enum" in e for e in event_problems(wrong)), event_problems(wrong)
    missing = {**good, "data": {k: v for k, v in good["data"].items() if k != "birth_place"}}
    assert any("required" in e for e in event_problems(missing))
    unknown = {**good, "dataschema": "urn:migrant-exchange:schema:birth.registered.v9"}
    assert any("resolves to no published schema" in e for e in event_problems(unknown))
    v1_claimed = {**good, "dataschema": spec_for("birth.registered.v1").dataschema}
    assert event_problems(v1_claimed), "a v2 payload under the v1 schema"


def test_the_run_wide_check_counts_every_recording_and_names_each_broken_event(tmp_path: Path) -> None:
    """What the run's end checks: events recorded again (a re-sent outbox) count each time and are
    checked once; a broken one is named by the file that recorded it first, with its rule."""
    v1 = {k: v for k, v in _birth_v1().items() if k != "birth_division"}
    data = p.BirthRegisteredV2(**v1, birth_place={"division": "440703", "kind": "home"})
    good = _envelope("birth.registered.v2", data.model_dump(mode="json"))
    wrong = {
        **good,
        "id": str(uuid.uuid4()),
        "data": {**good["data"], "birth_place": {"division": "440703", "kind": "barn"}},
    }
    lines = [orjson.dumps(e) + b"\n" for e in (good, wrong, good)]
    (tmp_path / "registry-440703-1.jsonl").write_bytes(b"".join(lines))
    (tmp_path / "registry-440703-2.jsonl").write_bytes(lines[1] + lines[0])
    types, broken = check_recorded(tmp_path)
    assert types == {"birth.registered.v2": 5}
    assert len(broken) == 1 and broken[0].startswith(
        f"registry-440703-1.jsonl: birth.registered.v2 {wrong['id']}: data:"
    )
    assert "$.birth_place.kind breaks" in broken[0] and "barn" not in broken[0]  # the rule, not the value


def test_producers_write_only_current_types_and_v1_births_upcast_to_v2() -> None:
    assert "birth.registered.v1" not in CURRENT_TYPES and "birth.registered.v2" in CURRENT_TYPES
    assert current_type("birth.registered.v1") == "birth.registered.v2"
    assert current_type("person.registered.v1") == "person.registered.v1"
    event_type, data = upcast_data("birth.registered.v1", _birth_v1(birth_division="320412"))
    assert event_type == "birth.registered.v2" and "birth_division" not in data
    place = p.BirthRegisteredV2.model_validate(data).birth_place
    assert (place.division, place.kind, place.institution) == ("320412", None, None)


def test_a_v1_event_is_verified_over_its_bytes_then_applied_as_v2() -> None:
    key = signing.new_private_key()
    entry = PublicKey(kid="k1", public_key=signing.b64u(signing.public_bytes(key)))
    trust = TrustList(divisions={"440703": DivisionTrust(signing_keys=[entry])})
    value = sign_document(_envelope("birth.registered.v1", _birth_v1()), "k1", key)
    assert verify_value(value, trust, dt.datetime.now(dt.UTC)) == "440703"
    event = parse_event(value)
    authority(event, "440703")
    assert event.type == "birth.registered.v2" and isinstance(event.data, p.BirthRegisteredV2)
    assert event.dataschema == spec_for("birth.registered.v2").dataschema
    assert event.signature == orjson.loads(value)["signature"]  # the v1 signature, over the v1 bytes
    # Re-signing the upcast form would be a forgery: the signature covers what the producer sent.
    upcast_doc = orjson.loads(Envelope[p.BirthRegisteredV2].model_validate(event).model_dump_json())
    assert canonical(upcast_doc) != canonical(orjson.loads(value))


def test_agreements_written_for_v1_still_hold_for_v2() -> None:
    assert covers(["birth.registered.v1"], "birth.registered.v2")
    assert covers(["birth.registered.v2"], "birth.registered.v1")
    assert not covers(["person.registered.v1"], "birth.registered.v2")
    v1_seen = sorted(set(p.BirthRegisteredV1.model_fields) - {"father_id_number"})
    [agreement] = agreements.parse(
        [
            {
                "division_a": "320412",
                "division_b": "440703",
                "visible_fields": {"440703": {"birth.registered.v1": v1_seen}},
            }
        ]
    )
    # The v1 restriction holds for v2, birth_division mapped to where v2 keeps it (birth_place).
    assert agreement.withheld("440703", "birth.registered.v2") == {"father_id_number"}
    payload = p.BirthRegisteredV2.model_validate(upcast_data("birth.registered.v1", _birth_v1())[1])
    sent = restrict(payload.model_dump(mode="json"), agreement.withheld("440703", "birth.registered.v2"))
    assert "birth_place" in sent and "father_id_number" not in sent
    assert agreement.withheld("440703", "person.registered.v1") == frozenset()


@pytest.mark.parametrize("old", sorted(UPCASTERS))
def test_every_upcaster_turns_a_valid_old_payload_into_a_valid_new_one(old: str) -> None:
    samples = {"birth.registered.v1": _birth_v1()}
    assert old in samples, f"add a sample {old} payload to this test"
    spec_for(old).payload.model_validate(samples[old])
    new, data = upcast_data(old, samples[old])
    spec_for(new).payload.model_validate(data)
    assert event_problems(_envelope(new, data)) == []


def test_the_event_tap_records_in_development_and_never_in_production(tmp_path: Path) -> None:
    for env, wanted in (({}, True), (production_settings(), False)):
        settings = BaseServiceSettings(events_record_dir=str(tmp_path / str(wanted)), **env)
        relay = OutboxRelay(None, settings)  # type: ignore[arg-type]  # the tap needs no database
        relay.tap.write([b'{"type": "x"}'])
        assert (tmp_path / str(wanted)).is_dir() is wanted
