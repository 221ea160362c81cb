"""Records for the fuzzer to aim at: a migrant family with a marriage, a pregnancy, a birth and a
certificate, the notifications the exchange sends about them, and a reconciliation run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import Api, medical_certificate, person_id, wait_until


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def _person(api: Api, sex: str) -> str:
    number = person_id(sex, dt.date(1990, 5, 17))
    body = {
        "id_number": number,
        "name": "张丽",
        "sex": sex,
        "birth_date": "1990-05-17",
        "hukou_division": ORIGIN,
    }
    _created(api.post("/v1/persons", body))
    return number


def seed_records(stack: Stack) -> dict[str, list[str]]:
    """Path parameter name -> ids of real records (for the client each service is fuzzed as)."""
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    exchange = Api(stack, "migrant_exchange", f"reg-{DESTINATION}")
    operator = Api(stack, "migrant_exchange", "operator")
    mother, father = _person(origin, "F"), _person(origin, "M")
    marriage = _created(
        origin.post(
            "/v1/marriages",
            {"spouse_a_id_number": father, "spouse_b_id_number": mother, "marriage_date": "2020-10-01"},
        )
    )
    pregnancy = _created(origin.post("/v1/pregnancies", {"mother_id_number": mother}))
    certificate = _created(origin.post("/v1/certificates", {"holder_id_number": mother}))
    move = {"id_number": mother, "from_division": ORIGIN, "to_division": DESTINATION}
    _created(origin.post("/v1/migrations", {**move, "kind": "departed", "migration_date": "2025-02-01"}))
    arrival = {
        **move,
        "kind": "arrived",
        "migration_date": "2025-02-02",
        "name": "张丽",
        "hukou_division": ORIGIN,
    }
    _created(dest.post("/v1/migrations", arrival))
    birth = {
        "medical_certificate_number": medical_certificate(),
        "child_name": "张小宝",
        "child_sex": "F",
        "child_birth_date": "2026-01-01",
        "mother_id_number": mother,
    }
    _created(dest.post("/v1/births", birth))
    notifications = wait_until(
        lambda: [n["notification_id"] for n in exchange.get("/v1/notifications", limit=20).json()], timeout=30
    )
    run = _created(operator.post("/v1/reconciliations", {"division_a": ORIGIN, "division_b": DESTINATION}))
    discrepancies = [d["id"] for d in operator.get("/v1/discrepancies", limit=5).json()]
    return {
        "id_number": [mother, father],
        "marriage_id": [marriage["marriage_id"]],
        "pregnancy_id": [pregnancy["pregnancy_id"]],
        "number": [certificate["certificate_number"]],
        "notification_id": notifications,
        "reconciliation_id": [run["reconciliation_id"]],
        "discrepancy_id": discrepancies,
        "issuer": [ORIGIN],
    }
