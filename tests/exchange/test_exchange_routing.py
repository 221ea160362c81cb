"""Routing through the migration history, the notification lifecycle, and per-subject ordering."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from shared.auth import DEFAULT_SCOPES, hash_secret
from shared.events.envelope import Envelope
from shared.identity import subject_key
from tests.exchange.exchange_helpers import (
    OFFLINE,
    SECRET,
    A,
    B,
    C,
    event,
    new_person,
    ok,
    person_event,
    produce,
    registry_api,
)
from tests.helpers import Api, medical_certificate, query, wait_until

pytestmark = pytest.mark.e2e


def _notes(stack: Stack, event_id: str) -> list[Any]:
    return query(
        stack.service("migrant_exchange").dsn,
        "SELECT target_division, state FROM notifications WHERE event_id = $1 ORDER BY target_division",
        event_id,
    )


def _applied(stack: Stack, event_id: Any) -> list[Any]:
    notes = _notes(stack, str(event_id))
    return notes if notes and all(n["state"] == "applied" for n in notes) else []


def _move(stack: Stack, kind: str, at: str, who: str, frm: str, to: str, day: str) -> dict[str, Any]:
    body = {"kind": kind, "id_number": who, "from_division": frm, "to_division": to, "migration_date": day}
    if kind != "departed":
        body |= {"name": "李梅", "hukou_division": A}
    moved = ok(registry_api(stack, at).post("/v1/migrations", body))
    wait_until(lambda: _applied(stack, moved["event_id"]), timeout=10)
    return moved


def _register(stack: Stack, who: str, hukou: str = A, residence: str = A) -> dict[str, Any]:
    born = f"{who[6:10]}-{who[10:12]}-{who[12:14]}"
    body = {
        "id_number": who,
        "name": "李梅",
        "sex": "F",
        "birth_date": born,
        "hukou_division": hukou,
        "residence_division": residence,
    }
    return ok(registry_api(stack, A).post("/v1/persons", body))


def _birth(stack: Stack, at: str, mother: str) -> tuple[str, dict[str, Any]]:
    cert = medical_certificate()
    body = {
        "medical_certificate_number": cert,
        "child_name": "李小米",
        "child_sex": "F",
        "child_birth_date": "2026-01-15",
        "mother_id_number": mother,
    }
    return cert, ok(registry_api(stack, at).post("/v1/births", body))


def test_a_birth_after_moving_on_reaches_the_origin_and_not_the_place_left(xstack: Stack) -> None:
    mother = new_person()
    _register(xstack, mother)
    _move(xstack, "departed", A, mother, A, B, "2024-03-01")
    _move(xstack, "arrived", B, mother, A, B, "2024-03-02")
    _move(xstack, "departed", B, mother, B, C, "2025-05-01")
    _move(xstack, "arrived", C, mother, B, C, "2025-05-02")
    cert, birth = _birth(xstack, C, mother)

    notes = wait_until(lambda: _applied(xstack, birth["event_id"]), timeout=10)
    assert [n["target_division"] for n in notes] == [A]
    origin = wait_until(
        lambda: query(_dsn(xstack, A), "SELECT * FROM births WHERE medical_certificate_number = $1", cert)
    )
    assert origin[0]["source_division"] == C and origin[0]["jurisdiction"] == A
    assert not query(_dsn(xstack, B), "SELECT 1 FROM births WHERE medical_certificate_number = $1", cert)
    roster = query(
        xstack.service("migrant_exchange").dsn,
        "SELECT hukou_division, residence_division, moves FROM roster WHERE subject = $1",
        subject_key(mother, SECRET),
    )
    assert (roster[0]["hukou_division"], roster[0]["residence_division"]) == (A, C)


def test_a_certificate_s_revocation_reaches_the_place_she_left_that_keeps_a_copy(xstack: Stack) -> None:
    """Her residence B keeps a copy of the certificate her hukou A issued. Once she moved on to C,
    A's revocation still reaches B (the exchange keeps where a certificate went, by its number),
    or B's copy would stay valid for good; C, her residence now but never sent the certificate,
    is told nothing of it."""
    her = new_person()
    _register(xstack, her)
    _move(xstack, "departed", A, her, A, B, "2024-03-01")
    _move(xstack, "arrived", B, her, A, B, "2024-03-02")
    cert = ok(registry_api(xstack, A).post("/v1/certificates", {"holder_id_number": her}))
    number = cert["certificate_number"]
    assert [n["target_division"] for n in wait_until(lambda: _applied(xstack, cert["event_id"]), 10)] == [B]
    assert wait_until(lambda: _copy(xstack, B, number))[0]["revoked_on"] is None  # B keeps a copy

    _move(xstack, "departed", B, her, B, C, "2025-05-01")
    _move(xstack, "arrived", C, her, B, C, "2025-05-02")
    revoked = ok(
        registry_api(xstack, A).post(f"/v1/certificates/{number}/revocation", {"reason": "replaced"})
    )

    notes = wait_until(lambda: _applied(xstack, revoked["event_id"]), timeout=10)
    assert [n["target_division"] for n in notes] == [B]
    copy = _copy(xstack, B, number)
    assert copy[0]["issuer"] == A and str(copy[0]["revoked_on"]) == revoked["revoked_on"]
    assert not _copy(xstack, C, number)  # C was never given the certificate, and is given none now
    held = query(
        xstack.service("migrant_exchange").dsn,
        "SELECT * FROM certificate_holders WHERE number = $1 ORDER BY division",
        number,
    )
    assert [dict(r) for r in held] == [{"number": number, "division": d} for d in (A, B)]  # nothing personal


def test_a_returnee_s_later_events_stay_at_the_origin(xstack: Stack) -> None:
    person = new_person()
    _register(xstack, person)
    _move(xstack, "departed", A, person, A, B, "2024-04-01")
    _move(xstack, "arrived", B, person, A, B, "2024-04-02")
    returned = _move(xstack, "returned", A, person, B, A, "2025-01-10")
    assert [n["target_division"] for n in _notes(xstack, str(returned["event_id"]))] == [B]

    _, birth = _birth(xstack, A, person)
    exchange_db = xstack.service("migrant_exchange").dsn
    wait_until(lambda: query(exchange_db, "SELECT 1 FROM inbox WHERE event_id = $1", birth["event_id"]))
    assert _notes(xstack, str(birth["event_id"])) == []  # nobody else keeps her records now


def _offline_client(stack: Stack) -> str:
    """A jurisdiction system that is not on Kafka: it only talks REST to the exchange."""
    secret = "offline-secret-for-tests"  # noqa: S105
    query(
        stack.service("migrant_exchange").dsn,
        """INSERT INTO clients (client_id, kind, jurisdiction, scopes, secret_hash)
           VALUES ('reg-510104', 'jurisdiction', $1, $2, $3) ON CONFLICT DO NOTHING""",
        OFFLINE,
        DEFAULT_SCOPES["jurisdiction"],
        hash_secret(secret),
    )
    return f"reg-510104.{secret}"


def test_a_notification_without_feedback_becomes_overdue_and_rest_feedback_closes_it(xstack: Stack) -> None:
    person = new_person()
    registered = _register(xstack, person, hukou=OFFLINE, residence=A)
    operator = Api(xstack, "migrant_exchange", "operator")

    def overdue() -> list[Any]:
        rows = ok(operator.get("/v1/notifications", state="overdue", jurisdiction=OFFLINE, limit=1000))
        return [n for n in rows if n["event_id"] == str(registered["event_id"])]

    wait_until(lambda: _notes(xstack, str(registered["event_id"])), timeout=10)
    assert _notes(xstack, str(registered["event_id"]))[0]["state"] == "pending"
    note = wait_until(overdue, timeout=10)[0]
    assert note["target_division"] == OFFLINE and note["overdue_at"] is not None
    assert note["payload"] is None  # the operator sees the tracking, not the person's data

    token = _offline_client(xstack)
    offline = httpx.Client(base_url=operator.base, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def mine() -> list[Any]:
        r = offline.get("/v1/notifications", params={"state": "overdue"})
        return (
            [n for n in r.json() if n["event_id"] == str(registered["event_id"])]
            if r.status_code == 200
            else []
        )

    listed = wait_until(mine, timeout=5)[0]
    assert listed["payload"]["id_number"] == person  # the addressee gets what it must apply
    forbidden = offline.get("/v1/notifications", params={"jurisdiction": A})
    assert forbidden.status_code == 403
    answered = ok(
        offline.post(f"/v1/notifications/{listed['notification_id']}/feedback", json={"outcome": "applied"})
    )
    assert answered["state"] == "applied"
    again = offline.post(
        f"/v1/notifications/{listed['notification_id']}/feedback", json={"outcome": "rejected"}
    )
    assert again.status_code == 409 and again.json()["errors"][0]["rule"] == "answered-once", again.text
    listed_again = offline.get(f"/v1/notifications/{listed['notification_id']}")
    assert listed_again.json()["state"] == "applied"  # the first answer stands


def test_an_early_event_waits_for_its_predecessor(xstack: Stack) -> None:
    person = new_person()
    first = person_event(person, B, B, A, sequence=1)
    move = {
        "migration_id": "0190b0a4-0000-7000-8000-000000000001",
        "id_number": person,
        "name": "测试",
        "hukou_division": B,
        "from_division": B,
        "to_division": C,
        "migration_date": "2025-01-01",
    }
    second = event("migration.departed.v1", B, move, first.subject, 2, origin=B, destination=C)
    exchange_db = xstack.service("migrant_exchange").dsn
    produce(xstack, [("vital.migration.v1", second)])
    wait_until(lambda: query(exchange_db, "SELECT 1 FROM parked_events WHERE event_id = $1", second.id))
    assert _notes(xstack, str(second.id)) == []
    produce(xstack, [("vital.person.v1", first)])
    wait_until(lambda: _notes(xstack, str(second.id)), timeout=10)
    assert [n["target_division"] for n in _notes(xstack, str(first.id))] == [A]
    # Routed after the registration it waited for, and the move itself decides: C hears, A does not.
    assert [n["target_division"] for n in _notes(xstack, str(second.id))] == [C]
    assert not query(exchange_db, "SELECT 1 FROM parked_events WHERE subject = $1", first.subject)


def test_a_gap_that_does_not_fill_becomes_a_discrepancy(xstack: Stack) -> None:
    person = new_person()
    first = person_event(person, B, B, C, sequence=1)
    third = person_event(person, B, B, A, sequence=3)
    exchange_db = xstack.service("migrant_exchange").dsn
    produce(xstack, [("vital.person.v1", first), ("vital.person.v1", third)])
    wait_until(lambda: _notes(xstack, str(first.id)), timeout=10)
    assert _notes(xstack, str(third.id)) == []  # waits for sequence 2
    gap = wait_until(
        lambda: query(
            exchange_db,
            "SELECT * FROM discrepancies WHERE kind = 'sequence_gap' AND subject = $1",
            first.subject,
        ),
        timeout=10,
    )
    assert json.loads(gap[0]["detail"]) == {"source": f"/registry/{B}", "missing_from": 2, "missing_to": 2}
    wait_until(lambda: _notes(xstack, str(third.id)), timeout=5)  # then it went on


def _gap_cases(stack: Stack, subject: str) -> list[dict[str, Any]]:
    rows = query(
        stack.service("migrant_exchange").dsn,
        "SELECT * FROM discrepancies WHERE kind = 'sequence_gap' AND subject = $1 ORDER BY created_at",
        subject,
    )
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def _released(stack: Stack, events: list[Envelope[Any]]) -> dict[str, Any]:
    """Publish ``events`` (a gap among them) and wait until the gap's deadline released them: its
    case is open, and the events that waited behind it were routed."""
    produce(stack, [("vital.person.v1", e) for e in events])
    case = wait_until(lambda: _gap_cases(stack, events[0].subject), timeout=10)[0]
    assert case["state"] == "open" and case["resolved_at"] is None
    wait_until(lambda: _notes(stack, str(events[-1].id)), timeout=5)
    return case


def test_a_gap_filled_late_resolves_its_case(xstack: Stack) -> None:
    person = new_person()
    first, third, fourth = (person_event(person, B, B, C, sequence=n) for n in (1, 3, 4))
    second = person_event(person, B, B, A, sequence=2)  # the late one: it alone reaches A
    case = _released(xstack, [first, third, fourth])
    assert case["detail"] == {"source": f"/registry/{B}", "missing_from": 2, "missing_to": 2}
    assert _notes(xstack, str(second.id)) == []
    produce(xstack, [("vital.person.v1", second)])
    # The far side: the late event was routed, and A's registry applied it.
    assert [n["target_division"] for n in wait_until(lambda: _applied(xstack, second.id), timeout=10)] == [A]
    filled = wait_until(lambda: [c for c in _gap_cases(xstack, first.subject) if c["state"] == "resolved"])
    assert [c["id"] for c in filled] == [case["id"]] and filled[0]["resolved_at"] is not None
    assert json.loads(filled[0]["resolution"])["action"] == "filled"
    assert filled[0]["detail"] == {**case["detail"], "arrived": [2], "still_missing": 0}
    # A redelivery of 2 changes nothing; the event behind it on its partition shows it was read.
    fifth = person_event(person, B, B, C, sequence=5)
    produce(xstack, [("vital.person.v1", second), ("vital.person.v1", fifth)])
    wait_until(lambda: _notes(xstack, str(fifth.id)), timeout=10)
    assert _gap_cases(xstack, first.subject) == filled
    assert len(_notes(xstack, str(second.id))) == 1


def test_a_gap_filled_in_part_stays_open_and_shows_what_arrived(xstack: Stack) -> None:
    person = new_person()
    first, second, third, fourth = (person_event(person, B, B, C, sequence=n) for n in (1, 2, 3, 4))
    case = _released(xstack, [first, fourth])
    assert case["detail"] == {"source": f"/registry/{B}", "missing_from": 2, "missing_to": 3}
    produce(xstack, [("vital.person.v1", third)])
    wait_until(lambda: _notes(xstack, str(third.id)), timeout=10)
    progress = wait_until(lambda: [c for c in _gap_cases(xstack, first.subject) if "arrived" in c["detail"]])
    assert progress[0]["state"] == "open" and progress[0]["resolved_at"] is None
    assert progress[0]["detail"] == {**case["detail"], "arrived": [3], "still_missing": 1}
    # The operator sees the progress: sequence numbers, not people.
    operator = Api(xstack, "migrant_exchange", "operator")
    listed = operator.get("/v1/discrepancies", state="open", kind="sequence_gap", jurisdiction=B).json()
    shown = next(c for c in listed if c["id"] == str(case["id"]))
    assert shown["detail"] == {**case["detail"], "arrived": [3], "still_missing": 1}
    assert shown["subject"] is None and shown["record_key"] is None
    produce(xstack, [("vital.person.v1", second)])
    filled = wait_until(lambda: [c for c in _gap_cases(xstack, first.subject) if c["state"] == "resolved"])
    assert filled[0]["detail"] == {**case["detail"], "arrived": [2, 3], "still_missing": 0}
    assert json.loads(filled[0]["resolution"])["action"] == "filled"


def _dsn(stack: Stack, code: str) -> str:
    return stack.service(f"registry-{code}").dsn


def _copy(stack: Stack, code: str, number: str) -> list[Any]:
    """The registry's copy of a counterpart's certificate."""
    return query(
        _dsn(stack, code),
        "SELECT issuer, revoked_on FROM counterpart_certificates WHERE jurisdiction = $1 AND number = $2",
        code,
        number,
    )


def _correct(
    stack: Stack, at: str, made: dict[str, Any], kind: str, key: str, changes: dict[str, Any]
) -> str:
    """``at`` corrects its record (made by ``made``'s event): the correction's event id."""
    body = {"corrected_event_id": str(made["event_id"]), "record_type": kind, "record_id": key,
            "changes": changes, "reason": "misread from the form"}  # fmt: skip
    return str(ok(registry_api(stack, at).post("/v1/corrections", body))["event_id"])


def _answered(stack: Stack, event_id: str) -> list[tuple[str, str]]:
    """(target, state) of each notification of ``event_id``, once every one of them is answered."""
    notes = _notes(stack, event_id)
    return (
        [(n["target_division"], n["state"]) for n in notes]
        if all(n["state"] != "pending" for n in notes)
        else []
    )


def test_a_correction_reaches_the_registries_holding_the_record_and_nobody_else(xstack: Stack) -> None:
    """She moved A -> B -> C. The birth B registered while she lived at B is held by B and A (it
    was sent to A alone). B's correction of it reaches A, which applies it; C, where she lives now,
    never held the birth: it is given none of its data, and answers no "not in our records" that
    an operator would take for a failure. Her person's and her moves' corrections, which hold no
    record of their own at the exchange, still reach her places of the moment."""
    her = new_person()
    registered = _register(xstack, her)
    _move(xstack, "departed", A, her, A, B, "2024-03-01")
    _move(xstack, "arrived", B, her, A, B, "2024-03-02")
    _, birth = _birth(xstack, B, her)
    assert [n["target_division"] for n in wait_until(lambda: _applied(xstack, birth["event_id"]), 10)] == [A]
    departed = _move(xstack, "departed", B, her, B, C, "2025-05-01")
    _move(xstack, "arrived", C, her, B, C, "2025-05-02")

    fixed = _correct(xstack, B, birth, "birth", str(birth["birth_id"]), {"child_name": "李小麦"})
    answered = wait_until(lambda: _answered(xstack, fixed), timeout=10)
    assert answered == [(A, "applied")]  # C never held the birth: told nothing, nothing rejected
    kept = "SELECT child_name FROM births WHERE jurisdiction = $1 AND id = $2::uuid"
    assert query(_dsn(xstack, A), kept, A, str(birth["birth_id"]))[0]["child_name"] == "李小麦"
    assert not query(_dsn(xstack, C), kept, C, str(birth["birth_id"]))

    renamed = _correct(xstack, A, registered, "person", her, {"name": "李美"})
    assert [t for t, _ in wait_until(lambda: _answered(xstack, renamed), 10)] == [C]
    redated = _correct(xstack, B, departed, "migration", str(departed["migration_id"]),
                       {"migration_date": "2025-04-30"})  # fmt: skip
    assert [t for t, _ in wait_until(lambda: _answered(xstack, redated), 10)] == sorted([A, C])
