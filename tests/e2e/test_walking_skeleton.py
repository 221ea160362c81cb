"""The walking skeleton end to end: two registries on two databases converge through Kafka alone."""

from __future__ import annotations

import datetime as dt

import pytest

from bench.common import FEEDBACK_ANSWERS
from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import Api, medical_certificate, metric, person_id, query, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def apis(stack: Stack) -> dict[str, Api]:
    return {
        "origin": Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}"),
        "dest": Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}"),
        "exchange": Api(stack, "migrant_exchange", "operator"),
        "verify": Api(stack, "verification", f"kiosk-{DESTINATION}"),
    }


def _migrant_with_birth(apis: dict[str, Api]) -> tuple[str, str, dict]:
    mother = person_id("F")
    r = apis["origin"].post(
        "/v1/persons",
        {
            "id_number": mother,
            "name": "张丽",
            "sex": "F",
            "birth_date": f"{mother[6:10]}-{mother[10:12]}-{mother[12:14]}",
            "hukou_division": ORIGIN,
        },
    )
    assert r.status_code == 201, r.text
    r = apis["origin"].post(
        "/v1/migrations",
        {
            "kind": "departed",
            "id_number": mother,
            "from_division": ORIGIN,
            "to_division": DESTINATION,
            "migration_date": "2025-02-01",
        },
    )
    assert r.status_code == 201, r.text
    r = apis["dest"].post(
        "/v1/migrations",
        {
            "kind": "arrived",
            "id_number": mother,
            "from_division": ORIGIN,
            "to_division": DESTINATION,
            "migration_date": "2025-02-02",
            "name": "张丽",
            "hukou_division": ORIGIN,
        },
    )
    assert r.status_code == 201, r.text
    cert = medical_certificate()
    r = apis["dest"].post(
        "/v1/births",
        {
            "medical_certificate_number": cert,
            "child_name": "张小宝",
            "child_sex": "F",
            "child_birth_date": "2026-09-01",
            "mother_id_number": mother,
        },
    )
    assert r.status_code == 201, r.text
    return mother, cert, r.json()


def test_birth_at_destination_reaches_origin_and_is_closed_by_feedback(
    stack: Stack, apis: dict[str, Api]
) -> None:
    mother, cert, birth = _migrant_with_birth(apis)
    origin_db = stack.service(f"registry-{ORIGIN}").dsn
    rows = wait_until(
        lambda: query(origin_db, "SELECT * FROM births WHERE medical_certificate_number = $1", cert),
        timeout=2.0,
    )
    assert rows[0]["source_division"] == DESTINATION and rows[0]["mother_id_number"] == mother
    assert rows[0]["jurisdiction"] == ORIGIN

    def closed() -> list:
        found = [
            n
            for n in apis["exchange"].get("/v1/notifications", limit=1000).json()
            if n["event_id"] == str(birth["event_id"])
        ]
        return found if found and all(n["state"] == "applied" for n in found) else []

    notes = wait_until(closed, timeout=3.0)
    assert [n["target_division"] for n in notes] == [ORIGIN]


def _delivery_state(stack: Stack, cert: str, event_id: str) -> dict[str, object]:
    """What a redelivered birth could change: the origin's copy of the birth, the exchange's
    notification, and the events either side queued about them (notifications, feedback)."""
    origin_db = stack.service(f"registry-{ORIGIN}").dsn
    exchange_db = stack.service("migrant_exchange").dsn
    notes = query(exchange_db, "SELECT * FROM notifications WHERE event_id = $1 ORDER BY id", event_id)
    note_ids = [str(n["id"]) for n in notes]
    return {
        "birth": [
            {k: v for k, v in r.items() if k != "created_at"}
            for r in query(origin_db, "SELECT * FROM births WHERE medical_certificate_number = $1", cert)
        ],
        "notifications": [dict(n) for n in notes],
        "notifications_queued": query(
            exchange_db,
            """SELECT id FROM outbox WHERE event_type = 'exchange.notification.v1'
                 AND convert_from(value, 'UTF8')::jsonb -> 'data' ->> 'event_id' = $1 ORDER BY id""",
            str(event_id),
        ),
        "feedback_queued": query(
            origin_db,
            f"SELECT id FROM ({FEEDBACK_ANSWERS}) AS f WHERE notification_id = ANY($1::text[]) ORDER BY id",
            note_ids,
        ),
    }


def test_the_same_birth_delivered_twice_changes_nothing(stack: Stack, apis: dict[str, Api]) -> None:
    _, cert, birth = _migrant_with_birth(apis)
    origin = stack.service(f"registry-{ORIGIN}")
    dest_db = stack.service(f"registry-{DESTINATION}").dsn
    exchange = stack.service("migrant_exchange")
    wait_until(lambda: query(origin.dsn, "SELECT 1 FROM births WHERE medical_certificate_number = $1", cert))
    wait_until(
        lambda: query(
            exchange.dsn,
            "SELECT 1 FROM notifications WHERE event_id = $1 AND state = 'applied'",
            birth["event_id"],
        )
    )
    before = _delivery_state(stack, cert, birth["event_id"])
    assert before["birth"] and before["notifications"] and before["feedback_queued"]
    skipped = {
        "exchange": metric(exchange.url, "inbox_duplicates_total", consumer="migrant-exchange-events"),
        "origin": metric(origin.url, "inbox_duplicates_total", consumer=f"registry-{ORIGIN}"),
    }
    # Re-publish the birth from the destination's outbox, and the notification from the exchange's.
    query(dest_db, "UPDATE outbox SET published_at = NULL WHERE event_id = $1", birth["event_id"])
    query(
        exchange.dsn,
        # (value is bytea: its ::text is hex, so the event id is looked for in the decoded JSON)
        """UPDATE outbox SET published_at = NULL WHERE event_type = 'exchange.notification.v1'
             AND convert_from(value, 'UTF8')::jsonb -> 'data' ->> 'event_id' = $1""",
        str(birth["event_id"]),
    )
    wait_until(lambda: not query(dest_db, "SELECT 1 FROM outbox WHERE published_at IS NULL"), timeout=3)
    wait_until(lambda: not query(exchange.dsn, "SELECT 1 FROM outbox WHERE published_at IS NULL"), timeout=3)
    # Consumed: the exchange read the birth again and the origin the notification, and each
    # found it in its inbox and skipped it (so their positions moved past the redelivery).
    wait_until(
        lambda: (
            metric(exchange.url, "inbox_duplicates_total", consumer="migrant-exchange-events")
            > skipped["exchange"]
        ),
        timeout=10,
    )
    wait_until(
        lambda: (
            metric(origin.url, "inbox_duplicates_total", consumer=f"registry-{ORIGIN}") > skipped["origin"]
        ),
        timeout=10,
    )
    # And without effect: the records as they were, nothing new queued on either side.
    assert _delivery_state(stack, cert, birth["event_id"]) == before


def test_certificate_verifies_valid_mismatch_and_not_found(stack: Stack, apis: dict[str, Api]) -> None:
    holder = person_id("M")
    born = f"{holder[6:10]}-{holder[10:12]}-{holder[12:14]}"
    assert (
        apis["origin"]
        .post(
            "/v1/persons",
            {"id_number": holder, "name": "王强", "sex": "M", "birth_date": born, "hukou_division": ORIGIN},
        )
        .status_code
        == 201
    )
    r = apis["origin"].post("/v1/certificates", {"holder_id_number": holder})
    assert r.status_code == 201, r.text
    number = r.json()["certificate_number"]

    def verify(id_number: str, cert: str = number) -> dict:
        res = apis["verify"].post(
            "/v1/verifications",
            {"certificate_number": cert, "holder_id_number": id_number, "purpose": "arrival_registration"},
        )
        assert res.status_code == 200, res.text
        return res.json()

    valid = wait_until(lambda: (v := verify(holder))["result"] == "valid" and v, timeout=3)
    assert valid["issuer"] == ORIGIN and valid["attributes"]["holder_name"] == "王强"
    assert set(valid["attributes"]) == {"holder_name", "marital_status", "children_count"}
    mismatch = verify(person_id("M"))
    assert mismatch["result"] == "holder_mismatch" and mismatch["attributes"] == {}
    assert verify(holder, f"{ORIGIN}-2026-NOSUCHNO")["result"] == "not_found"


@pytest.mark.parametrize(
    ("field", "value", "rule_text"),
    [
        ("id_number", "11010119900307123X", "check digit"),
        ("hukou_division", "999999", "unknown division"),
        ("birth_date", (dt.date.today() + dt.timedelta(days=3)).isoformat(), "future"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    stack: Stack, apis: dict[str, Api], field: str, value: str, rule_text: str
) -> None:
    good = person_id("F")
    body = {
        "id_number": good,
        "name": "错误",
        "sex": "F",
        "birth_date": f"{good[6:10]}-{good[10:12]}-{good[12:14]}",
        "hukou_division": ORIGIN,
        field: value,
    }
    db = stack.service(f"registry-{ORIGIN}").dsn
    outbox_before = query(db, "SELECT count(*) AS n FROM outbox")[0]["n"]
    r = apis["origin"].post("/v1/persons", body)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert any(e["field"] == field for e in problem["errors"]), problem
    assert rule_text in problem["detail"].lower()
    assert value not in r.text or field != "id_number"  # the identity number is never echoed
    assert query(db, "SELECT count(*) AS n FROM outbox")[0]["n"] == outbox_before
    assert not query(db, "SELECT 1 FROM persons WHERE id_number = $1", body["id_number"])
