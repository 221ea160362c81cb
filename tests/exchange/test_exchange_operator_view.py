"""Operators see operations, not people (issue 16, acceptance 3).

Two mothers register a pregnancy at 320412 and close it: one whose origin is 440703 (a registry
on Kafka, which applies the notifications) and one whose origin is 510104 (REST only, which
answers one notification with a conflict and the other with a rejection). The addressees see the
real event types; the operator's notification listing, the flows, the dashboard stream and every
service's ``/metrics`` show the neutral category instead, conflicts as field names only, and no
subject key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from shared.auth import hash_secret
from shared.identity import subject_key
from shared.sensitivity import FIELDS_WITHHELD, NEUTRAL_CATEGORY, NEUTRAL_ROUTE, NEUTRAL_TOPIC
from tests.exchange.exchange_helpers import OFFLINE, SECRET, A, B, C, new_person, produce, rest_only_client
from tests.helpers import Api, query, wait_until

pytestmark = pytest.mark.e2e
SENSITIVE = re.compile("pregnan", re.IGNORECASE)
PREGNANCY_TYPES = {"pregnancy.registered.v1", "pregnancy.closed.v1"}


def _ok(r: httpx.Response) -> Any:
    assert r.status_code in (200, 201), r.text
    return r.json()


def _client(stack: Stack, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=stack.service("migrant_exchange").url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _mother(stack: Stack, hukou: str) -> tuple[str, list[str]]:
    """A woman registered at A (living there, registered in ``hukou``) who registers a pregnancy
    and closes it at A. Returns her identity number and the two pregnancy events' ids."""
    at = Api(stack, f"registry-{A}", f"reg-{A}")
    who = new_person()
    born = f"{who[6:10]}-{who[10:12]}-{who[12:14]}"
    _ok(
        at.post(
            "/v1/persons",
            {
                "id_number": who,
                "name": "林芳",
                "sex": "F",
                "birth_date": born,
                "hukou_division": hukou,
                "residence_division": A,
            },
        )
    )
    pregnancy = _ok(
        at.post(
            "/v1/pregnancies",
            {"mother_id_number": who, "registered_on": "2026-02-01", "expected_delivery": "2026-10-20"},
        )
    )
    closed = _ok(
        at.post(
            f"/v1/pregnancies/{pregnancy['pregnancy_id']}/closure",
            {"outcome": "ended", "closed_on": "2026-03-01"},
        )
    )
    return who, [str(pregnancy["event_id"]), str(closed["event_id"])]


STARTED = dt.datetime.now(dt.UTC)


@pytest.fixture(autouse=True)
def _only_this_tests_traffic() -> None:
    global STARTED
    STARTED = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)


def _listing(api: httpx.Client, event_ids: list[str], **params: Any) -> list[dict[str, Any]]:
    """The listing's rows of these events (empty until the client is known: it is cached)."""
    # Only this module's traffic: the listing is oldest first, and other tests on the same stack
    # may have sent thousands of notifications before.
    r = api.get("/v1/notifications", params={"limit": 1000, "after": STARTED.isoformat(), **params})
    return [n for n in r.json() if n["event_id"] in event_ids] if r.status_code == 200 else []


def _stream_until(stack: Stack, seen: Callable[[dict[str, Any]], bool]) -> tuple[str, dict[str, Any]]:
    """What the dashboard stream sends an operator, up to the first snapshot that shows ``seen``
    (the stream is sampled once a second). Returns everything read and that snapshot."""
    url = stack.service("migrant_exchange").url
    headers = {"Authorization": f"Bearer {stack.token('operator')}"}
    text, deadline = "", time.monotonic() + 15
    with httpx.stream("GET", f"{url}/v1/stream", headers=headers, timeout=20) as r:
        assert r.status_code == 200
        for chunk in r.iter_text():
            text += chunk
            for block in text.split("\n\n")[:-1]:
                if block.startswith("event: snapshot\ndata: "):
                    picture = json.loads(block.split("data: ", 1)[1])
                    if seen(picture):
                        return text, picture
            assert time.monotonic() < deadline, "the stream never showed it"
    raise AssertionError("the stream ended")


def test_the_operator_sees_a_pregnancy_as_operations_and_no_metric_names_it(xstack: Stack) -> None:
    offline = rest_only_client(xstack, "ops-view-510104")
    operator = _client(xstack, xstack.token("operator"))
    on_kafka, kafka_events = _mother(xstack, hukou=B)
    rest_only, rest_events = _mother(xstack, hukou=OFFLINE)
    mothers = [on_kafka, rest_only]
    subjects = [subject_key(m, SECRET) for m in mothers]

    # 440703's registry applies both notifications over Kafka.
    wait_until(
        lambda: [n["state"] for n in _listing(operator, kafka_events, jurisdiction=B)] == ["applied"] * 2,
        timeout=15,
    )
    # 510104 reads its own notifications in full (the real types, its payloads) ...
    mine = wait_until(lambda: rows if len(rows := _listing(offline, rest_events)) == 2 else [], timeout=10)
    assert {r["event_type"] for r in mine} == PREGNANCY_TYPES
    assert all(r["payload"]["mother_id_number"] == rest_only for r in mine)
    assert {r["subject"] for r in mine} == {subjects[1]}
    by_type = {r["event_type"]: r for r in mine}
    # ... and answers one with a conflict (values included) and the other with a rejection.
    _ok(
        offline.post(
            f"/v1/notifications/{by_type['pregnancy.registered.v1']['notification_id']}/feedback",
            json={
                "outcome": "conflict",
                "conflicts": [
                    {"field": "expected_delivery", "ours": "2026-10-27", "theirs": "2026-10-20"},
                    {"field": "pregnancy_id", "ours": "a-local-id", "theirs": "another-id"},
                ],
            },
        )
    )
    _ok(
        offline.post(
            f"/v1/notifications/{by_type['pregnancy.closed.v1']['notification_id']}/feedback",
            json={"outcome": "rejected", "reason": f"pregnancy of {rest_only} unknown here"},
        )
    )

    # The operator's listing: the same four notifications, as operations.
    listing = _ok(operator.get("/v1/notifications", params={"limit": 1000, "after": STARTED.isoformat()}))
    seen = [n for n in listing if n["event_id"] in kafka_events + rest_events]
    assert len(seen) == 4
    assert {r["event_type"] for r in seen} == {NEUTRAL_CATEGORY}
    assert all(r["subject"] is None and r["payload"] is None for r in seen)
    states = {r["event_id"]: r for r in seen}
    conflict = states[rest_events[0]]
    assert conflict["state"] == "conflict"
    # Of a restricted notification the exchange keeps no field of the answer at all (a due date
    # would say its kind, a value is hers): only that its fields were withheld.
    assert conflict["conflicts"] == []
    assert conflict["reason"] == FIELDS_WITHHELD
    rejected = states[rest_events[1]]
    assert rejected["state"] == "rejected"
    assert rejected["reason"] == f"{NEUTRAL_CATEGORY} of [id-number] unknown here"
    assert {states[e]["target_division"] for e in kafka_events} == {B}
    listed = json.dumps(seen, ensure_ascii=False)
    assert not SENSITIVE.search(listed)
    assert not any(s in listed for s in subjects) and not any(m in listed for m in mothers)
    assert "2026-10-27" not in listed and "another-id" not in listed
    # Only sensitive types are neutral: the same mothers' registrations are named.
    everything = json.dumps(listing, ensure_ascii=False)
    assert "person.registered.v1" in everything and not SENSITIVE.search(everything)

    # The roster: the movements, without the subject keys a jurisdiction sees for its own people.
    roster = _ok(operator.get("/v1/migrants", params={"origin": B, "destination": A, "limit": 5000}))
    assert roster and all(m["subject"] is None for m in roster)
    own = _ok(
        _client(xstack, xstack.token(f"reg-{B}")).get("/v1/migrants", params={"origin": B, "limit": 5000})
    )
    assert subjects[0] in {m["subject"] for m in own}

    # The flows: aggregates, with the mothers' origin -> residence cells.
    flows = _ok(operator.get("/v1/flows"))
    assert {(c["origin"], c["destination"]) for c in flows["flows"]} >= {(B, A), (OFFLINE, A)}
    assert not SENSITIVE.search(json.dumps(flows)) and not any(s in json.dumps(flows) for s in subjects)

    # The dashboard stream counts them under the neutral category and names no pregnancy.
    stream, _ = _stream_until(xstack, lambda picture: NEUTRAL_CATEGORY in picture["rates"]["by_type"])
    assert not SENSITIVE.search(stream) and not any(s in stream for s in subjects)

    # Every service's metrics: the neutral names where a pregnancy was produced, consumed and
    # recorded, and no pregnancy name anywhere.
    services = [f"registry-{code}" for code in (A, B, C)] + ["migrant_exchange", "verification"]
    metrics = {name: httpx.get(xstack.service(name).url + "/metrics", timeout=10).text for name in services}
    for name, text in metrics.items():
        assert "events_" in text or "http_request" in text, name
        assert not SENSITIVE.search(text), f"{name}: {SENSITIVE.findall(text)[:3]}"
    assert f'topic="{NEUTRAL_TOPIC}"' in metrics[f"registry-{A}"]  # produced
    assert f'route="{NEUTRAL_ROUTE}"' in metrics[f"registry-{A}"]  # registered and closed over HTTP
    assert f'type="{NEUTRAL_CATEGORY}"' in metrics["migrant_exchange"]  # applied by the exchange
    assert f'topic="{NEUTRAL_TOPIC}"' in metrics["migrant_exchange"]  # consumed by the exchange


def test_a_client_without_a_jurisdiction_that_is_not_an_operator_is_refused(xstack: Stack) -> None:
    """Not given every jurisdiction's traffic: a department with ``exchange:read`` and no home."""
    client_id, secret = "dept-nowhere", uuid.uuid4().hex
    query(
        xstack.service("migrant_exchange").dsn,
        """INSERT INTO clients (client_id, kind, jurisdiction, scopes, secret_hash) VALUES ($1, 'department', NULL, $2, $3)
           ON CONFLICT (client_id) DO UPDATE SET secret_hash = EXCLUDED.secret_hash""",
        client_id,
        ["exchange:read"],
        hash_secret(secret),
    )
    headers = {"Authorization": f"Bearer {client_id}.{secret}"}
    url = xstack.service("migrant_exchange").url

    def answer(path: str) -> httpx.Response:
        # the client cache reloads on NOTIFY: wait until the new client is known
        found = wait_until(
            lambda: (
                r if (r := httpx.get(url + path, headers=headers, timeout=10)).status_code != 401 else None
            )
        )
        assert found is not None
        return found

    for path in ("/v1/notifications", "/v1/migrants"):
        r = answer(path)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["rule"] == "client-jurisdiction"
    # The operator, also without a jurisdiction, still reads the listing.
    assert _client(xstack, xstack.token("operator")).get("/v1/notifications").status_code == 200


def test_a_dead_lettered_pregnancy_event_is_listed_under_the_neutral_names(xstack: Stack) -> None:
    """One dead letter is one person's message: its topic and reason name no pregnancy for operators."""
    poison = json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": f"/registry/{A}",
            "type": "pregnancy.registered.v1",
            "subject": "s" * 64,
            "time": "2026-02-01T00:00:00Z",
            "datacontenttype": "application/json",
            "dataschema": "urn:migrant-exchange:schema:pregnancy.registered.v1",
            "sequence": 1,
            "data": {"pregnancy_id": "not-a-uuid", "marker": uuid.uuid4().hex},
        }
    ).encode()
    produce(xstack, [("vital.pregnancy.v1", poison)])
    exchange_db = xstack.service("migrant_exchange").dsn
    [stored] = wait_until(
        lambda: query(exchange_db, "SELECT id, topic, reason FROM dead_letters WHERE value = $1", poison),
        timeout=15,
    )
    assert stored["topic"] == "vital.pregnancy.v1"  # what the topic hides; the reason is kept neutral
    assert stored["reason"].startswith("invalid event: ") and not SENSITIVE.search(stored["reason"])

    operator = _client(xstack, xstack.token("operator"))
    shown = _ok(operator.get(f"/v1/dead-letters/{stored['id']}"))
    assert shown["topic"] == NEUTRAL_TOPIC and NEUTRAL_CATEGORY in shown["reason"]
    assert not SENSITIVE.search(json.dumps(shown))
    listed = [
        d
        for d in _ok(operator.get("/v1/dead-letters", params={"limit": 1000}))["dead_letters"]
        if d["id"] == stored["id"]
    ]
    assert listed == [shown]

    def shows_it(picture: dict[str, Any]) -> bool:
        return any(d["id"] == stored["id"] for d in picture["operations"]["dead_letters"]["latest"])

    stream, picture = _stream_until(xstack, shows_it)
    latest = picture["operations"]["dead_letters"]["latest"]
    assert [d["topic"] for d in latest if d["id"] == stored["id"]] == [NEUTRAL_TOPIC]
    assert not SENSITIVE.search(stream)
    metrics = httpx.get(xstack.service("migrant_exchange").url + "/metrics", timeout=10).text
    assert re.search(rf'dlq_messages_total\{{[^}}]*topic="{re.escape(NEUTRAL_TOPIC)}"', metrics)
