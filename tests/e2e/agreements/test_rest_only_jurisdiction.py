"""A jurisdiction not on Kafka (110101) takes part over REST (issue 17 point 3).

Its own system (here: the test, with the stack's client ``reg-110101``) lists its pending
notifications, fetches each payload, and answers ``applied`` / ``conflict`` / ``rejected``,
under the agreement's deadline and the same overdue escalation as a registry on Kafka. Nothing
of the payload travels on Kafka to it (it has no encryption key), and each REST pick-up is
audited and allowed to the addressee's clients only.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.agreements.agreements_kit import (
    REST_DEADLINE_SECONDS,
    REST_ONLY,
    A,
    B,
    birth,
    notes_of,
    ok,
    register,
    registry,
    rest_client,
)
from tests.helpers import Api, person_id, query, wait_until

pytestmark = pytest.mark.e2e


def _collect(client: httpx.Client, event_id: Any) -> dict[str, Any]:
    """What the REST-only system does for one event: find its notification, fetch the payload."""

    def listed() -> list[dict[str, Any]]:
        rows = ok(client.get("/v1/notifications", params={"limit": 1000}))
        return [n for n in rows if n["event_id"] == str(event_id)]  # type: ignore[union-attr]

    [note] = wait_until(listed, timeout=15)
    fetched = ok(client.get(f"/v1/notifications/{note['notification_id']}"))
    assert fetched["payload"], fetched  # the addressee gets what it must apply
    return fetched


def _answer(client: httpx.Client, note: dict[str, Any], outcome: str, **extra: Any) -> dict[str, Any]:
    answered = ok(
        client.post(
            f"/v1/notifications/{note['notification_id']}/feedback", json={"outcome": outcome, **extra}
        )
    )
    assert answered["state"] == outcome
    return answered


def test_the_walk_through_over_rest_and_a_pregnancy_closed_there_after_she_returned_home(
    agreements_stack: Stack,
) -> None:
    s = agreements_stack
    rest = rest_client(s)
    origin = registry(s, A)
    mother = person_id()
    # 1. A woman registered at the origin ... 2. ... leaves for 110101 ...
    ok(register(s, A, mother, hukou=A, residence=A))
    left = ok(
        origin.post(
            "/v1/migrations",
            {
                "kind": "departed",
                "id_number": mother,
                "from_division": A,
                "to_division": REST_ONLY,
                "migration_date": "2025-03-01",
            },
        )
    )
    # 3. ... registers a pregnancy for maternal care while she lives there, 4. ... and gives birth.
    preg = ok(origin.post("/v1/pregnancies", {"mother_id_number": mother, "expected_delivery": "2027-02-01"}))
    born = ok(birth(s, A, mother))

    departure = _collect(rest, left["event_id"])
    assert departure["payload"]["to_division"] == REST_ONLY and departure["payload"]["id_number"] == mother
    pregnancy = _collect(rest, preg["event_id"])
    assert pregnancy["payload"]["expected_delivery"] == "2027-02-01"  # no restriction towards 110101
    # On the broker it is only ``vital.restricted``; the addressee reads the real type here.
    assert pregnancy["event_type"] == "pregnancy.registered.v1"
    child = _collect(rest, born["event_id"])
    assert child["payload"]["child_name"] == born["child_name"]
    for note in (departure, pregnancy, child):
        made = dt.datetime.fromisoformat(note["created_at"])
        allowed = dt.datetime.fromisoformat(note["deadline"]) - made
        # The agreement's deadline, as for a registry on Kafka (from its routing transaction's start).
        assert (
            dt.timedelta(seconds=REST_DEADLINE_SECONDS)
            <= allowed
            < dt.timedelta(seconds=REST_DEADLINE_SECONDS + 1)
        )
        _answer(rest, note, "applied")
    # The origin sees every one closed by 110101's feedback.
    for event_id in (left["event_id"], preg["event_id"], born["event_id"]):
        assert [(n["target_division"], n["state"]) for n in notes_of(s, event_id)] == [(REST_ONLY, "applied")]

    # She comes home; the closure of the pregnancy 110101 was told of still reaches 110101.
    back = ok(
        origin.post(
            "/v1/migrations",
            {
                "kind": "returned",
                "id_number": mother,
                "from_division": REST_ONLY,
                "to_division": A,
                "migration_date": "2026-06-01",
                "name": "李梅",
                "hukou_division": A,
            },
        )
    )
    _answer(rest, _collect(rest, back["event_id"]), "applied")
    closed = ok(origin.post(f"/v1/pregnancies/{preg['pregnancy_id']}/closure", {"outcome": "birth"}))
    closure = _collect(rest, closed["event_id"])
    assert (
        closure["payload"]["pregnancy_id"] == preg["pregnancy_id"]
        and closure["payload"]["outcome"] == "birth"
        and closure["event_type"] == "pregnancy.closed.v1"
    )
    _answer(rest, closure, "applied")
    assert [(n["target_division"], n["state"]) for n in notes_of(s, closed["event_id"])] == [
        (REST_ONLY, "applied")
    ]


def test_payloads_go_to_the_addressee_over_rest_only_and_each_pick_up_is_audited(
    agreements_stack: Stack,
) -> None:
    s = agreements_stack
    rest = rest_client(s)
    who = person_id()
    made = ok(register(s, A, who, hukou=REST_ONLY, residence=A))
    note = _collect(rest, made["event_id"])
    exchange = s.service("migrant_exchange")
    picked = query(
        exchange.dsn,
        "SELECT client_id, purpose, subject, detail FROM audit_log WHERE action = 'notification.fetched'"
        " AND detail->>'notification_id' = $1",
        note["notification_id"],
    )
    assert {r["client_id"] for r in picked} == {f"reg-{REST_ONLY}"}
    assert all(
        r["subject"] == note["subject"] and json.loads(r["detail"])["jurisdiction"] == REST_ONLY
        for r in picked
    )

    # Another jurisdiction cannot fetch it; the sender and an operator see the tracking, not the person.
    other = Api(s, "migrant_exchange", f"reg-{B}").get(f"/v1/notifications/{note['notification_id']}")
    assert other.status_code == 404 and other.json()["errors"][0]["rule"] == "addressed-to-client"
    sender = ok(Api(s, "migrant_exchange", f"reg-{A}").get(f"/v1/notifications/{note['notification_id']}"))
    operator = ok(Api(s, "migrant_exchange", "operator").get(f"/v1/notifications/{note['notification_id']}"))
    assert sender["state"] == operator["state"] and sender["state"] in ("pending", "overdue")
    assert sender["payload"] is None and operator["payload"] is None and operator["subject"] is None

    # On Kafka the notification to 110101 carries no payload at all: it has no key to open one.
    sent = query(exchange.dsn, "SELECT value FROM outbox WHERE event_type = 'exchange.notification.v1'")
    mine = [
        d
        for d in (json.loads(bytes(r["value"]))["data"] for r in sent)
        if d["notification_id"] == note["notification_id"]
    ]
    assert mine and all(d["payload"] == {} and d["sealed"] is None for d in mine)
    _answer(rest, note, "applied")


def test_rest_feedback_conflict_and_rejected_and_overdue_escalation(agreements_stack: Stack) -> None:
    s = agreements_stack
    rest = rest_client(s)
    first, second = person_id(), person_id()
    conflicting = _collect(rest, ok(register(s, A, first, hukou=REST_ONLY, residence=A))["event_id"])
    late = ok(register(s, A, second, hukou=REST_ONLY, residence=A))
    answered = _answer(
        rest,
        conflicting,
        "conflict",
        conflicts=[{"field": "name", "ours": "李美", "theirs": "李梅"}],
        reason="recorded here with another name",
    )
    assert answered["conflicts"] == [{"field": "name", "ours": "李美", "theirs": "李梅"}]

    # Unanswered past the agreement's deadline: escalated like a registry's, and still answerable.
    def overdue() -> list[Any]:
        return [n for n in notes_of(s, late["event_id"]) if n["state"] == "overdue"]

    wait_until(overdue, timeout=REST_DEADLINE_SECONDS + 10)
    note = _collect(rest, late["event_id"])
    assert note["state"] == "overdue" and note["overdue_at"] is not None
    _answer(rest, note, "rejected", reason="not registered here")
    [row] = notes_of(s, late["event_id"])
    assert row["state"] == "rejected"
    # The origin's operator sees both outcomes as operations.
    seen = ok(
        Api(s, "migrant_exchange", "operator").get("/v1/notifications", jurisdiction=REST_ONLY, limit=1000)
    )
    states = {n["notification_id"]: n["state"] for n in seen}
    assert (
        states[conflicting["notification_id"]] == "conflict" and states[note["notification_id"]] == "rejected"
    )
