"""Requests at the edges that an adversarial review found answered wrongly (each test failed then):

* a move from a division to itself is refused by name (it was a 500: only the event payload's
  own validator knew the rule), alone, under an Idempotency-Key and as one item of a batch;
* births of one mother registered at once are each recorded in turn or refused, never answered
  201 while nothing was recorded (and an event announced about it);
* a notification is answered once over REST: the same answer again is a retry, another is a 409,
  and neither relays a second feedback.
"""

from __future__ import annotations

import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import Api, medical_certificate, person_id, query, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def origin(stack: Stack) -> Api:
    return Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")


def _born(number: str) -> str:
    return f"{number[6:10]}-{number[10:12]}-{number[12:14]}"


def _register(api: Api, sex: str = "F") -> str:
    number = person_id(sex)
    body = {
        "id_number": number,
        "name": "测试",
        "sex": sex,
        "birth_date": _born(number),
        "hukou_division": ORIGIN,
    }
    r = api.post("/v1/persons", body)
    assert r.status_code == 201, r.text
    return number


def _refused_naming(r: Any, field: str) -> None:
    assert r.status_code == 422, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field, r.text


def _same_place_arrival() -> dict[str, Any]:
    """An arrival of someone new here, from here to here: every field valid on its own."""
    return {
        "kind": "arrived",
        "id_number": person_id("F"),
        "from_division": ORIGIN,
        "to_division": ORIGIN,
        "migration_date": "2025-02-01",
        "name": "原地",
        "hukou_division": DESTINATION,
    }


def _persons(stack: Stack, number: str) -> int:
    db = stack.service(f"registry-{ORIGIN}").dsn
    return int(query(db, "SELECT count(*) AS n FROM persons WHERE id_number = $1", number)[0]["n"])


def test_a_move_to_the_place_it_leaves_is_422_not_500(stack: Stack, origin: Api) -> None:
    move = _same_place_arrival()
    _refused_naming(origin.post("/v1/migrations", move), "to_division")
    assert _persons(stack, move["id_number"]) == 0


def test_a_move_to_the_place_it_leaves_is_422_under_an_idempotency_key(stack: Stack, origin: Api) -> None:
    move = _same_place_arrival()
    r = origin.post("/v1/migrations", move, **{"Idempotency-Key": str(uuid.uuid4())})
    _refused_naming(r, "to_division")


def test_a_departure_to_the_place_it_leaves_is_422_not_500(stack: Stack, origin: Api) -> None:
    woman = _register(origin)
    move = {
        "kind": "departed",
        "id_number": woman,
        "from_division": ORIGIN,
        "to_division": ORIGIN,
        "migration_date": "2025-02-01",
    }
    _refused_naming(origin.post("/v1/migrations", move), "to_division")


def test_a_batch_with_one_same_place_move_refuses_that_item_only(stack: Stack, origin: Api) -> None:
    woman = person_id("F")
    person = {
        "id_number": woman,
        "name": "批量",
        "sex": "F",
        "birth_date": _born(woman),
        "hukou_division": ORIGIN,
    }
    batch = {
        "items": [{"kind": "person", "body": person}, {"kind": "migration", "body": _same_place_arrival()}]
    }
    r = origin.post("/v1/batches", batch)
    assert r.status_code == 200, f"{r.status_code} {r.text}"
    results = r.json()["results"]
    assert results[0]["status"] == 201, results
    assert results[1]["status"] == 422 and results[1]["problem"]["errors"][0]["field"] == "to_division", (
        results
    )


def test_births_of_one_mother_registered_at_once_are_each_recorded_or_refused(
    stack: Stack, origin: Api
) -> None:
    db = stack.service(f"registry-{ORIGIN}").dsn
    phantoms: list[str] = []
    for _ in range(4):
        mother = _register(origin)

        def birth(_: int, mother: str = mother) -> Any:
            api = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")  # a connection of its own
            body = {
                "medical_certificate_number": medical_certificate(),
                "child_name": "同时",
                "child_sex": "F",
                "child_birth_date": "2024-02-01",
                "mother_id_number": mother,
            }
            return api.post("/v1/births", body)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(birth, range(8)))
        assert all(a.status_code in (201, 409) for a in answers), [(a.status_code, a.text) for a in answers]
        recorded = {
            str(r["id"])
            for r in query(
                db, "SELECT id FROM births WHERE jurisdiction = $1 AND mother_id_number = $2", ORIGIN, mother
            )
        }
        for a in answers:
            if a.status_code == 201 and a.json()["birth_id"] not in recorded:
                phantoms.append(f"birth_order {a.json()['birth_order']} event {a.json()['event_id']}")
    assert not phantoms, f"answered 201 but not in the births table (their events were announced): {phantoms}"


def test_a_notification_is_answered_once_over_rest(stack: Stack, origin: Api) -> None:
    # A person of the origin who moved to the destination: the destination (on Kafka) answers it.
    woman = _register(origin)
    move = {"kind": "departed", "id_number": woman, "from_division": ORIGIN, "to_division": DESTINATION,
            "migration_date": "2025-02-01"}  # fmt: skip
    assert origin.post("/v1/migrations", move).status_code == 201
    exchange = Api(stack, "migrant_exchange", f"reg-{DESTINATION}")
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()

    def answered() -> dict[str, Any] | None:
        rows = exchange.get("/v1/notifications", jurisdiction=DESTINATION, after=since, limit=1000).json()
        mine = [n for n in rows if n["target_division"] == DESTINATION and n["event_type"] == "migration.departed.v1"
                and n["state"] != "pending"]  # fmt: skip
        return mine[-1] if mine else None

    note = wait_until(answered, timeout=30)
    exchange_db = stack.service("migrant_exchange").dsn

    def feedback_events() -> int:
        sql = "SELECT count(*) AS n FROM outbox WHERE event_type = 'exchange.feedback.v1'"
        return int(query(exchange_db, sql)[0]["n"])

    before = feedback_events()
    path = f"/v1/notifications/{note['notification_id']}/feedback"
    r = exchange.post(path, {"outcome": "rejected", "reason": "a second answer"})
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["rule"] == "answered-once" and r.json()["errors"][0]["field"] == "outcome"
    r = exchange.post(path, {"outcome": note["state"]})  # the first answer again: a retry
    assert r.status_code == 200 and r.json()["state"] == note["state"], r.text
    assert feedback_events() == before  # neither relayed a feedback that contradicts the first
