"""The registry as a registrar uses it: every event endpoint's happy path and each domain rule's refusal.

Runs against the session stack (real HTTP, PostgreSQL and the broker); each test makes its own people.
"""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import Api, medical_certificate, person_id, query, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def origin(stack: Stack) -> Api:
    return Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")


@pytest.fixture(scope="module")
def dest(stack: Stack) -> Api:
    return Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")


def born(id_number: str) -> str:
    return f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"


def register(api: Api, sex: str = "F", hukou: str = ORIGIN, birth: dt.date | None = None) -> str:
    number = person_id(sex, birth)
    r = api.post(
        "/v1/persons",
        {
            "id_number": number,
            "name": "测试人",
            "sex": sex,
            "birth_date": born(number),
            "hukou_division": hukou,
        },
    )
    assert r.status_code == 201, r.text
    return number


def refused(r, status: int, rule: str, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"][0]["rule"] == rule, problem
    if field is not None:
        assert problem["errors"][0]["field"] == field, problem
    return problem


def outbox_count(stack: Stack, jurisdiction: str = ORIGIN) -> int:
    db = stack.service(f"registry-{jurisdiction}").dsn
    return int(
        query(db, "SELECT count(*) AS n FROM outbox WHERE event_type NOT LIKE 'exchange.feedback%'")[0]["n"]
    )


def test_person_is_registered_once_with_the_sex_of_its_number(stack: Stack, origin: Api) -> None:
    number = register(origin, "M")
    r = origin.post(
        "/v1/persons",
        {
            "id_number": number,
            "name": "重复",
            "sex": "M",
            "birth_date": born(number),
            "hukou_division": ORIGIN,
        },
    )
    refused(r, 409, "no-duplicate", "id_number")
    other = person_id("M")
    r = origin.post(
        "/v1/persons",
        {"id_number": other, "name": "性别", "sex": "F", "birth_date": born(other), "hukou_division": ORIGIN},
    )
    refused(r, 422, "sex-matches-id-number", "sex")
    # A man of elsewhere, recorded to marry a woman of here: kept, not announced (his own
    # registries speak for him), and the marriage is registered.
    before = outbox_count(stack)
    groom = {"id_number": other, "name": "他乡", "sex": "M", "birth_date": born(other)}
    r = origin.post("/v1/persons", {**groom, "hukou_division": DESTINATION, "residence_division": "110101"})
    assert r.status_code == 201 and r.json()["event_id"] is None, r.text
    assert outbox_count(stack) == before
    bride = register(origin, "F")
    marriage = {"spouse_a_id_number": bride, "spouse_b_id_number": other, "marriage_date": "2025-05-20"}
    assert origin.post("/v1/marriages", marriage).status_code == 201


def test_marriage_rules_and_dissolution(stack: Stack, origin: Api) -> None:
    husband, wife, other = register(origin, "M"), register(origin, "F"), register(origin, "F")
    young = register(origin, "M", birth=dt.date.today() - dt.timedelta(days=365 * 21))
    before = outbox_count(stack)
    r = origin.post(
        "/v1/marriages",
        {"spouse_a_id_number": husband, "spouse_b_id_number": wife, "marriage_date": "2024-05-01"},
    )
    assert r.status_code == 201, r.text
    marriage = r.json()
    assert outbox_count(stack) == before + 2  # one event per spouse's stream

    r = origin.post(
        "/v1/marriages",
        {"spouse_a_id_number": husband, "spouse_b_id_number": other, "marriage_date": "2024-06-01"},
    )
    refused(r, 409, "one-active-marriage", "spouse_a_id_number")
    r = origin.post(
        "/v1/marriages",
        {"spouse_a_id_number": person_id("M"), "spouse_b_id_number": other, "marriage_date": "2024-06-01"},
    )
    refused(r, 422, "person-must-exist", "spouse_a_id_number")
    r = origin.post(
        "/v1/marriages",
        {
            "spouse_a_id_number": young,
            "spouse_b_id_number": other,
            "marriage_date": dt.date.today().isoformat(),
        },
    )
    refused(r, 422, "marriage-age", "spouse_a_id_number")
    assert outbox_count(stack) == before + 2  # refused writes publish nothing

    path = f"/v1/marriages/{marriage['marriage_id']}/dissolution"
    refused(
        origin.post(path, {"dissolution_date": "2024-01-01", "reason": "divorce"}),
        422,
        "dissolution-after-marriage",
    )
    r = origin.post(path, {"dissolution_date": "2025-01-10", "reason": "divorce"})
    assert r.status_code == 200, r.text
    assert r.json()["dissolution_reason"] == "divorce"
    refused(
        origin.post(path, {"dissolution_date": "2025-02-10", "reason": "divorce"}), 409, "already-dissolved"
    )
    r = origin.post(
        "/v1/marriages",
        {"spouse_a_id_number": husband, "spouse_b_id_number": other, "marriage_date": "2024-12-01"},
    )
    refused(r, 422, "marriages-in-date-order")
    r = origin.post(
        "/v1/marriages",
        {"spouse_a_id_number": husband, "spouse_b_id_number": other, "marriage_date": "2025-03-01"},
    )
    assert r.status_code == 201, r.text
    refused(
        origin.post(
            f"/v1/marriages/{uuid.uuid4()}/dissolution", {"dissolution_date": "2025-01-10", "reason": "death"}
        ),
        404,
        "exists",
    )


def test_migration_history_must_make_sense(stack: Stack, origin: Api, dest: Api) -> None:
    mover = register(origin, "F")
    move = {"id_number": mover, "from_division": ORIGIN, "to_division": DESTINATION}
    r = origin.post("/v1/migrations", {**move, "kind": "departed", "migration_date": "2025-03-01"})
    assert r.status_code == 201, r.text
    r = origin.post("/v1/migrations", {**move, "kind": "departed", "migration_date": "2025-03-05"})
    refused(r, 422, "depart-from-residence")
    arrival = {
        **move,
        "kind": "arrived",
        "migration_date": "2025-03-02",
        "name": "测试人",
        "hukou_division": ORIGIN,
    }
    assert dest.post("/v1/migrations", arrival).status_code == 201
    r = dest.post("/v1/migrations", {**arrival, "migration_date": "2025-03-09"})
    refused(r, 422, "arrival-needs-departure", "kind")
    r = dest.post(
        "/v1/migrations",
        {
            **move,
            "kind": "departed",
            "from_division": DESTINATION,
            "to_division": "110101",
            "migration_date": "2025-01-01",
        },
    )
    refused(r, 422, "moves-in-date-order")
    # A return goes home, and is recorded at home.
    r = origin.post(
        "/v1/migrations",
        {
            "kind": "returned",
            "id_number": mover,
            "from_division": DESTINATION,
            "to_division": "110101",
            "migration_date": "2025-05-01",
        },
    )
    refused(r, 422, "arrival-recorded-at-destination")
    r = origin.post(
        "/v1/migrations",
        {
            "kind": "returned",
            "id_number": mover,
            "from_division": DESTINATION,
            "to_division": ORIGIN,
            "migration_date": "2025-05-01",
        },
    )
    assert r.status_code == 201, r.text


def test_spouses_are_two_people_and_strangers_need_identity(stack: Stack, origin: Api) -> None:
    one = register(origin, "M")
    r = origin.post(
        "/v1/marriages", {"spouse_a_id_number": one, "spouse_b_id_number": one, "marriage_date": "2024-05-01"}
    )
    refused(r, 422, "two-persons", "spouse_b_id_number")
    r = origin.post(
        "/v1/migrations",
        {
            "kind": "arrived",
            "id_number": person_id("F"),
            "from_division": DESTINATION,
            "to_division": ORIGIN,
            "migration_date": "2025-01-01",
        },
    )
    refused(r, 422, "first-record-needs-identity", "name")


def test_birth_rules(stack: Stack, origin: Api) -> None:
    mother, father = register(origin, "F"), register(origin, "M")
    birth = {
        "medical_certificate_number": medical_certificate(),
        "child_name": "小一",
        "child_sex": "F",
        "child_birth_date": "2024-02-01",
        "mother_id_number": mother,
        "father_id_number": father,
    }
    r = origin.post("/v1/births", birth)
    assert r.status_code == 201, r.text
    assert r.json()["birth_order"] == 1
    refused(origin.post("/v1/births", birth), 409, "no-duplicate", "medical_certificate_number")
    fresh = {**birth, "medical_certificate_number": medical_certificate()}
    refused(
        origin.post("/v1/births", {**fresh, "birth_order": 3}), 422, "birth-order-consistent", "birth_order"
    )
    refused(
        origin.post("/v1/births", {**fresh, "child_birth_date": "2023-02-01"}), 422, "birth-order-consistent"
    )
    refused(
        origin.post("/v1/births", {**fresh, "mother_id_number": person_id("F")}),
        422,
        "person-must-exist",
        "mother_id_number",
    )
    refused(
        origin.post("/v1/births", {**fresh, "father_id_number": person_id("M")}),
        422,
        "person-must-exist",
        "father_id_number",
    )
    refused(
        origin.post("/v1/births", {**fresh, "mother_id_number": father, "father_id_number": None}),
        422,
        "mother-is-female",
    )
    early = register(origin, "F", birth=dt.date(2024, 6, 1))
    refused(
        origin.post("/v1/births", {**fresh, "mother_id_number": early, "father_id_number": None}),
        422,
        "child-after-mother",
        "child_birth_date",
    )
    twin = origin.post("/v1/births", {**fresh, "child_name": "小二"})
    assert twin.status_code == 201 and twin.json()["birth_order"] == 2  # twins: same day, next order


def test_pregnancy_is_registered_closed_and_ended_by_a_birth(stack: Stack, origin: Api) -> None:
    mother = register(origin, "F")
    r = origin.post(
        "/v1/pregnancies",
        {"mother_id_number": mother, "registered_on": "2025-01-10", "expected_delivery": "2025-08-01"},
    )
    assert r.status_code == 201, r.text
    first = r.json()
    refused(origin.post("/v1/pregnancies", {"mother_id_number": mother}), 409, "one-open-pregnancy")
    refused(
        origin.post("/v1/pregnancies", {"mother_id_number": register(origin, "M")}), 422, "mother-is-female"
    )
    refused(
        origin.post(
            "/v1/pregnancies",
            {
                "mother_id_number": register(origin, "F"),
                "registered_on": "2025-01-10",
                "expected_delivery": "2026-12-01",
            },
        ),
        422,
        "expected-delivery-plausible",
    )
    closure = f"/v1/pregnancies/{first['pregnancy_id']}/closure"
    refused(
        origin.post(closure, {"outcome": "ended", "closed_on": "2024-12-01"}),
        422,
        "closure-after-registration",
    )
    r = origin.post(closure, {"outcome": "ended", "closed_on": "2025-03-01"})
    assert r.status_code == 200 and r.json()["outcome"] == "ended", r.text
    refused(origin.post(closure, {"outcome": "ended"}), 409, "already-closed")
    late = {
        "corrected_event_id": first["event_id"],
        "record_type": "pregnancy",
        "record_id": first["pregnancy_id"],
        "changes": {"registered_on": "2025-04-01"},  # after the closure, before the expected delivery
        "reason": "date mistyped at the counter",
    }
    refused(origin.post("/v1/corrections", late), 422, "closure-after-registration", "changes.registered_on")

    second = origin.post(
        "/v1/pregnancies", {"mother_id_number": mother, "registered_on": "2025-04-01"}
    ).json()
    r = origin.post(
        "/v1/births",
        {
            "medical_certificate_number": medical_certificate(),
            "child_name": "小宝",
            "child_sex": "M",
            "child_birth_date": "2025-11-20",
            "mother_id_number": mother,
        },
    )
    assert r.status_code == 201, r.text
    row = query(
        stack.service(f"registry-{ORIGIN}").dsn,
        "SELECT * FROM pregnancies WHERE id = $1",
        uuid.UUID(second["pregnancy_id"]),
    )
    assert row[0]["outcome"] == "birth" and row[0]["closed_on"] == dt.date(2025, 11, 20)


def test_correction_names_the_event_it_corrects_and_why(stack: Stack, origin: Api) -> None:
    mother = register(origin, "F")
    birth = origin.post(
        "/v1/births",
        {
            "medical_certificate_number": medical_certificate(),
            "child_name": "错名",
            "child_sex": "F",
            "child_birth_date": "2024-03-03",
            "mother_id_number": mother,
        },
    ).json()
    fix = {
        "corrected_event_id": birth["event_id"],
        "record_type": "birth",
        "record_id": birth["birth_id"],
        "changes": {"child_name": "正名"},
        "reason": "typed wrongly at the counter",
    }
    refused(
        origin.post("/v1/corrections", {**fix, "corrected_event_id": str(uuid.uuid4())}),
        422,
        "correction-names-its-event",
    )
    refused(
        origin.post("/v1/corrections", {**fix, "changes": {"mother_id_number": mother}}),
        422,
        "field-not-correctable",
    )
    refused(
        origin.post("/v1/corrections", {**fix, "changes": {"child_birth_date": "1900-01-01"}}),
        422,
        "child-after-mother",
    )
    refused(
        origin.post("/v1/corrections", {**fix, "record_type": "certificate", "record_id": "x"}),
        422,
        "not-correctable",
    )
    refused(origin.post("/v1/corrections", {**fix, "record_id": str(uuid.uuid4())}), 404, "exists")
    r = origin.post("/v1/corrections", {**fix, "reason": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = origin.post("/v1/corrections", fix)
    assert r.status_code == 201, r.text
    assert r.json()["previous"] == {"child_name": "错名"}
    db = stack.service(f"registry-{ORIGIN}").dsn
    assert (
        query(db, "SELECT child_name FROM births WHERE id = $1", uuid.UUID(birth["birth_id"]))[0][
            "child_name"
        ]
        == "正名"
    )
    # A later correction may name the correction's own event.
    again = {**fix, "corrected_event_id": r.json()["event_id"], "changes": {"child_sex": "M"}}
    assert origin.post("/v1/corrections", again).status_code == 201
    events = query(
        db,
        "SELECT value FROM outbox WHERE event_type = 'record.corrected.v1' AND convert_from(value, 'UTF8') LIKE '%' || $1 || '%'",
        birth["birth_id"],
    )
    assert len(events) == 2


def test_idempotency_key_replays_the_first_answer_and_writes_nothing(stack: Stack, origin: Api) -> None:
    number = person_id("F")
    body = {
        "id_number": number,
        "name": "幂等",
        "sex": "F",
        "birth_date": born(number),
        "hukou_division": ORIGIN,
    }
    key = f"test-{uuid.uuid4()}"
    first = origin.post("/v1/persons", body, **{"Idempotency-Key": key})
    assert first.status_code == 201
    count = outbox_count(stack)
    again = origin.post("/v1/persons", body, **{"Idempotency-Key": key})
    assert again.status_code == 201 and again.content == first.content
    assert again.headers.get("idempotent-replayed") == "true"
    assert outbox_count(stack) == count
    other = origin.post("/v1/persons", {**body, "name": "别的"}, **{"Idempotency-Key": key})
    refused(other, 422, "idempotency-key-reuse", "Idempotency-Key")
    # A refused write is replayed as refused, and still writes nothing.
    bad_key = f"test-{uuid.uuid4()}"
    unknown = {"mother_id_number": person_id("F")}
    r1 = origin.post("/v1/pregnancies", unknown, **{"Idempotency-Key": bad_key})
    r2 = origin.post("/v1/pregnancies", unknown, **{"Idempotency-Key": bad_key})
    assert r1.status_code == 422 and r2.content == r1.content
    assert outbox_count(stack) == count


def test_counterpart_records_land_marked_with_their_source(stack: Stack, origin: Api, dest: Api) -> None:
    mother, husband = register(origin, "F"), register(origin, "M")
    for who in (mother, husband):
        r = origin.post(
            "/v1/migrations",
            {
                "kind": "departed",
                "id_number": who,
                "from_division": ORIGIN,
                "to_division": DESTINATION,
                "migration_date": "2025-02-01",
            },
        )
        assert r.status_code == 201, r.text
    dest_db, origin_db = stack.service(f"registry-{DESTINATION}").dsn, stack.service(f"registry-{ORIGIN}").dsn
    wait_until(
        lambda: (
            len(query(dest_db, "SELECT 1 FROM persons WHERE id_number = ANY($1::text[])", [mother, husband]))
            == 2
        )
    )
    m = dest.post(
        "/v1/marriages",
        {"spouse_a_id_number": husband, "spouse_b_id_number": mother, "marriage_date": "2025-04-01"},
    )
    assert m.status_code == 201, m.text
    preg = dest.post("/v1/pregnancies", {"mother_id_number": mother, "registered_on": "2025-05-01"})
    assert preg.status_code == 201, preg.text
    rows = wait_until(
        lambda: query(origin_db, "SELECT * FROM marriages WHERE id = $1", uuid.UUID(m.json()["marriage_id"]))
    )
    assert rows[0]["source_division"] == DESTINATION and rows[0]["jurisdiction"] == ORIGIN
    rows = wait_until(
        lambda: query(
            origin_db, "SELECT * FROM pregnancies WHERE id = $1", uuid.UUID(preg.json()["pregnancy_id"])
        )
    )
    assert rows[0]["source_division"] == DESTINATION
    # The origin's view of its out-migrant is complete: the married status shows on its certificate.
    cert = origin.post("/v1/certificates", {"holder_id_number": mother})
    assert cert.status_code == 201 and cert.json()["marital_status"] == "married"

    # Conflict: the origin already has a different birth for this mother and date.
    origin_birth = origin.post(
        "/v1/births",
        {
            "medical_certificate_number": medical_certificate(),
            "child_name": "甲",
            "child_sex": "F",
            "child_birth_date": "2025-12-01",
            "mother_id_number": mother,
        },
    )
    assert origin_birth.status_code == 201, origin_birth.text
    dest_birth = dest.post(
        "/v1/births",
        {
            "medical_certificate_number": medical_certificate(),
            "child_name": "乙",
            "child_sex": "M",
            "child_birth_date": "2025-12-01",
            "mother_id_number": mother,
        },
    )
    assert dest_birth.status_code == 201, dest_birth.text

    def conflict_feedback() -> list[dict]:
        feedback = [
            orjson.loads(r["value"])["data"]
            for r in query(
                origin_db,
                "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id DESC LIMIT 50",
            )
        ]
        return [
            f
            for f in feedback
            if f["outcome"] == "conflict" and any(c["field"] == "child_name" for c in f["conflicts"])
        ]

    found = wait_until(conflict_feedback, timeout=5)
    fields = {c["field"] for c in found[0]["conflicts"]}
    assert {"medical_certificate_number", "child_name", "child_sex"} <= fields
    assert len(query(origin_db, "SELECT 1 FROM births WHERE mother_id_number = $1", mother)) == 1
