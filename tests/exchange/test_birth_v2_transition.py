"""The birth.registered v1 -> v2 transition as the jurisdictions meet it: a mixed stream.

320412 still runs the old registry and publishes ``birth.registered.v1`` (stood in for by the
test, signing with 320412's own key as its relay would); 440703 was upgraded and its registry
publishes ``birth.registered.v2`` with a structured place of birth. Both travel on
``vital.birth.v1`` through the real broker, interleaved; the exchange routes both (a v1 birth's
father hears of it too), and the mothers' origin 110101 applies both the same way.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from devstack.stack import Stack
from shared.identity import subject_key
from tests.exchange.exchange_helpers import SECRET, A, B, C, event, produce
from tests.helpers import Api, medical_certificate, migrant, person_id, query, wait_until

pytestmark = pytest.mark.e2e


def _registry(stack: Stack, code: str) -> Api:
    return Api(stack, f"registry-{code}", f"reg-{code}")


def _old_producer_birth(stack: Stack, mother: str, father: str | None, child: str) -> Any:
    """A v1 birth as 320412's not yet upgraded registry records and publishes it (its own
    records hold the birth too, so later reconciliations of 320412's pairs find nothing)."""
    data = {
        "birth_id": str(uuid.uuid4()),
        "medical_certificate_number": medical_certificate(),
        "child_name": child,
        "child_sex": "M",
        "child_birth_date": "2025-11-02",
        "mother_id_number": mother,
        "father_id_number": father,
        "birth_order": 1,
        "birth_division": A,
    }
    ev = event("birth.registered.v1", A, data, subject_key(mother, SECRET), 1, origin=C, destination=A)
    query(
        stack.service(f"registry-{A}").dsn,
        """INSERT INTO births (id, jurisdiction, medical_certificate_number, child_name, child_sex,
                               child_birth_date, mother_id_number, father_id_number, birth_order,
                               birth_division, source_division, event_id)
           VALUES ($1, $2, $3, $4, 'M', $5, $6, $7, 1, $2, $2, $8)""",
        ev.data.birth_id,
        A,
        ev.data.medical_certificate_number,
        child,
        ev.data.child_birth_date,
        mother,
        father,
        ev.id,
    )
    return ev


def test_v1_and_v2_births_on_one_stream_are_routed_and_applied_alike(xstack: Stack) -> None:
    # Two women of 110101 living elsewhere: one in 320412 (old registry), one in 440703 (upgraded).
    old_mother, new_mother = migrant(xstack, C, A, "赵敏"), migrant(xstack, C, B, "钱丽")
    father = person_id("M")
    born = f"{father[6:10]}-{father[10:12]}-{father[12:14]}"
    person = {"id_number": father, "name": "孙强", "sex": "M", "birth_date": born, "hukou_division": B}
    assert _registry(xstack, B).post("/v1/persons", person).status_code == 201
    exchange = xstack.service("migrant_exchange").dsn
    wait_until(
        lambda: query(exchange, "SELECT 1 FROM roster WHERE subject = $1", subject_key(father, SECRET))
    )

    first = _old_producer_birth(xstack, old_mother, father, "赵一")
    produce(xstack, [("vital.birth.v1", first)])
    r = _registry(xstack, B).post(
        "/v1/births",
        {
            "medical_certificate_number": medical_certificate(),
            "child_name": "钱二",
            "child_sex": "F",
            "child_birth_date": "2025-11-03",
            "mother_id_number": new_mother,
            "birth_place_kind": "hospital",
            "birth_institution": "广州市妇女儿童医疗中心",
        },
    )
    assert r.status_code == 201, r.text
    new = r.json()
    # A mother the exchange never heard of: routed by the envelope's origin, as before v2.
    second = _old_producer_birth(xstack, person_id("F"), None, "周三")
    produce(xstack, [("vital.birth.v1", second)])

    notes = wait_until(
        lambda: (
            (
                rows := query(
                    exchange,
                    """SELECT event_id, event_type, target_division, state, payload FROM notifications
                   WHERE event_id = ANY($1::uuid[]) ORDER BY target_division""",
                    [first.id, new["event_id"], second.id],
                )
            )
            and len(rows) == 4
            and all(n["state"] == "applied" for n in rows)
            and rows
        ),
        timeout=20,
    )
    # Routed the same way: each to the mother's origin, the v1 birth to the father's too, and
    # both announced to the counterparts as the current version.
    assert sorted((str(n["event_id"]), n["target_division"]) for n in notes) == sorted(
        [(str(first.id), C), (str(first.id), B), (str(new["event_id"]), C), (str(second.id), C)]
    )
    assert {n["event_type"] for n in notes} == {"birth.registered.v2"}
    # Applied the same way at the origin: one row each, the v1 birth's place kind unknown.
    births = query(
        xstack.service(f"registry-{C}").dsn,
        """SELECT medical_certificate_number, child_name, birth_division, birth_place_kind, birth_institution,
                  source_division FROM births WHERE mother_id_number = ANY($1::text[]) ORDER BY source_division""",
        [old_mother, new_mother],
    )
    assert [tuple(b)[1:] for b in births] == [
        ("赵一", A, None, None, A),
        ("钱二", B, "hospital", "广州市妇女儿童医疗中心", B),
    ]
    assert births[0]["medical_certificate_number"] == first.data.medical_certificate_number
    # The father's registry holds the v1 birth too.
    at_father = query(
        xstack.service(f"registry-{B}").dsn,
        "SELECT birth_division, birth_place_kind FROM births WHERE medical_certificate_number = $1",
        first.data.medical_certificate_number,
    )
    assert [tuple(b) for b in at_father] == [(A, None)]
