"""The published contracts, as a jurisdiction meets them: served by every service, the AsyncAPI
document accepted by the AsyncAPI Initiative's own parser, and the events the services really
sent (recorded by their relays) valid against the schemas their ``dataschema`` names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.events.catalog import CATALOG
from shared.events.contracts import DOCS
from shared.events.recording import recorded_by, recording_path
from shared.kafka import all_topics
from tests.conftest import RECORDED_EVENTS
from tests.contracts_kit import event_problems
from tests.helpers import FEEDBACK_TYPES, Api, answered, medical_certificate, migrant, query, wait_until

pytestmark = pytest.mark.e2e

JS = Path(__file__).resolve().parents[1] / "js"
SERVICES = [f"registry-{ORIGIN}", f"registry-{DESTINATION}", "migrant_exchange", "verification"]


def _asyncapi_parser(document: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@asyncapi" / "parser").exists():
        pytest.fail("node or tests/js/node_modules is missing: run `make node-tools`")
    done = subprocess.run(
        [node, str(JS / "validate_asyncapi.cjs")],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_every_service_serves_the_published_documents(stack: Stack) -> None:
    asyncapi = orjson.loads((DOCS / "asyncapi.json").read_bytes())
    for name in SERVICES:
        with httpx.Client(base_url=stack.service(name).url, timeout=10) as http:
            assert http.get("/asyncapi.json").json() == asyncapi, name
            listed = http.get("/v1/schemas").json()
            assert {e["type"] for e in listed} == set(CATALOG), name
            for entry in listed:
                schema = http.get(entry["url"]).json()
                assert schema["$id"] == entry["dataschema"] == CATALOG[entry["type"]].dataschema
                assert schema == orjson.loads((DOCS / "schemas" / f"{entry['type']}.json").read_bytes())
            missing = http.get("/v1/schemas/nothing.happened.v1")
            assert missing.status_code == 404
            assert missing.headers["content-type"].startswith("application/problem+json")
            assert missing.json()["errors"][0]["field"] == "event_type"
    old = next(e for e in listed if e["type"] == "birth.registered.v1")
    assert (old["current"], old["upcast_to"]) == (False, "birth.registered.v2")


def test_the_asyncapi_document_validates_with_the_asyncapi_parser(stack: Stack) -> None:
    served = httpx.get(stack.service("migrant_exchange").url + "/asyncapi.json", timeout=10).json()
    result = _asyncapi_parser(served)
    assert result["errors"] == [] and result["warnings"] == [], result
    assert result["version"] == "3.0.0"
    assert set(result["channels"]) == set(all_topics())
    assert set(CATALOG) <= set(result["messages"])
    # The same parser refuses a document whose operation names a message its channel lacks.
    broken = json.loads(json.dumps(served))
    del broken["channels"]["vital.birth.v1"]["messages"]["birth.registered.v2"]
    refused = _asyncapi_parser(broken)
    assert any(
        "birth.registered.v2" in e["path"] or "birth.registered.v2" in e["message"] for e in refused["errors"]
    ), refused


def _birth_at_destination(stack: Stack) -> dict[str, Any]:
    """The README walk-through: a woman registered at the origin moves and gives birth at the
    destination, in hospital."""
    mother = migrant(stack, ORIGIN, DESTINATION, "林芳")
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    r = dest.post(
        "/v1/births",
        {
            "medical_certificate_number": medical_certificate(),
            "child_name": "林小雨",
            "child_sex": "F",
            "child_birth_date": "2025-10-01",
            "mother_id_number": mother,
            "birth_place_kind": "hospital",
            "birth_institution": "湛江市妇幼保健院",
        },
    )
    assert r.status_code == 201, r.text
    birth: dict[str, Any] = r.json()
    assert (birth["birth_place_kind"], birth["birth_institution"]) == ("hospital", "湛江市妇幼保健院")
    return birth


def test_the_events_services_send_keep_the_schemas_their_dataschema_names(stack: Stack) -> None:
    birth = _birth_at_destination(stack)
    exchange_db = stack.service("migrant_exchange").dsn
    wait_until(
        lambda: query(
            exchange_db,
            "SELECT 1 FROM notifications WHERE event_id = $1 AND state = 'applied'",
            birth["event_id"],
        ),
        timeout=15,
    )

    def sent() -> dict[str, dict[str, Any]]:
        """This birth's events as the relays published them: the birth, its notification, the feedback."""
        events = _sent_by(stack)
        out = {e["type"]: e for e in events if e["id"] == str(birth["event_id"])}
        notes = [
            e
            for e in events
            if e["type"] == "exchange.notification.v1" and e["data"]["event_id"] == str(birth["event_id"])
        ]
        out |= {n["type"]: n for n in notes}
        ids = {n["data"]["notification_id"] for n in notes}
        for e in events:
            if answered(e) & ids:  # alone, or in a registry's batch
                out["feedback"] = e
        return out

    seen = wait_until(lambda: len(s := sent()) == 3 and s, timeout=10)
    assert set(seen) == {"birth.registered.v2", "exchange.notification.v1", "feedback"}
    assert seen["feedback"]["type"] in FEEDBACK_TYPES
    assert seen["birth.registered.v2"]["data"]["birth_place"] == {
        "division": DESTINATION,
        "kind": "hospital",
        "institution": "湛江市妇幼保健院",
    }
    url = stack.service(f"registry-{ORIGIN}").url
    for event in seen.values():
        assert event["signature"], event["type"]  # as published: signed by the relay
        schema = httpx.get(f"{url}/v1/schemas/{event['type']}", timeout=10).json()
        assert schema["$id"] == event["dataschema"]  # the dataschema resolves to the served schema
        assert event_problems(event) == [], event["type"]
    # And every event this stack sent so far (every process of the run: at the run's end).
    broken = [(e["type"], p) for e in _sent_by(stack) for p in event_problems(e)]
    assert broken == []


def _sent_by(stack: Stack) -> list[dict[str, Any]]:
    """What the stack's processes published so far, as their relays recorded it."""
    return [
        orjson.loads(value)
        for svc in stack.services
        if svc.process is not None
        for value in recorded_by(recording_path(RECORDED_EVENTS, svc.name, svc.process.pid))
    ]
