"""The stack and helpers of the agreement and REST-only end-to-end tests.

The stack: registries 320412 and 440703 on Kafka, 110101 REST-only (no registry, its own client
``reg-110101``), and an agreements file with a restriction in one direction only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack.stack import REST_ONLY, Stack
from tests.helpers import Api, medical_certificate, query

A, B = "320412", "440703"
BIRTH_SEEN_BY_B = [
    "birth_id",
    "medical_certificate_number",
    "child_name",
    "child_sex",
    "child_birth_date",
    "mother_id_number",
    "birth_order",
    "birth_division",
]
PREGNANCY_SEEN_BY_B = ["pregnancy_id", "mother_id_number", "registered_in", "registered_on"]
REST_DEADLINE_SECONDS = 4
AGREEMENTS: list[dict[str, Any]] = [
    {
        "division_a": A,
        "division_b": B,
        "event_types": ["*"],
        "visible_fields": {
            B: {"birth.registered.v1": BIRTH_SEEN_BY_B, "pregnancy.registered.v1": PREGNANCY_SEEN_BY_B}
        },
    },
    {
        "division_a": A,
        "division_b": REST_ONLY,
        "event_types": ["*"],
        "deadline_seconds": REST_DEADLINE_SECONDS,
    },
    {"division_a": B, "division_b": REST_ONLY, "event_types": ["person.registered.v1"]},
]

__all__ = ["REST_ONLY", "A", "B"]


def agreements_file(stack: Stack) -> Path:
    return stack.run_dir.parent / "agreements-stack.yaml"


def write_agreements(stack: Stack | Path, entries: list[dict[str, Any]]) -> Path:
    path = agreements_file(stack) if isinstance(stack, Stack) else stack
    path.write_text(yaml.safe_dump(entries, allow_unicode=True))
    return path


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def registry(stack: Stack, code: str, reader: str | None = None) -> Api:
    """The registry of ``code``, called by the client of ``reader`` (default: its own)."""
    return Api(stack, f"registry-{code}", f"reg-{reader or code}")


def register(stack: Stack, at: str, who: str, hukou: str, residence: str) -> httpx.Response:
    born = f"{who[6:10]}-{who[10:12]}-{who[12:14]}"
    sex = "M" if int(who[16]) % 2 else "F"
    body = {
        "id_number": who,
        "name": "李梅",
        "sex": sex,
        "birth_date": born,
        "hukou_division": hukou,
        "residence_division": residence,
    }
    return registry(stack, at).post("/v1/persons", body)


def birth(stack: Stack, at: str, mother: str, father: str | None = None) -> httpx.Response:
    body = {
        "medical_certificate_number": medical_certificate(),
        "child_name": "陈小雨",
        "child_sex": "F",
        "child_birth_date": "2026-10-01",
        "mother_id_number": mother,
    }
    if father:
        body["father_id_number"] = father
    return registry(stack, at).post("/v1/births", body)


def notes_of(stack: Stack, event_id: Any) -> list[dict[str, Any]]:
    rows = query(
        stack.service("migrant_exchange").dsn,
        """SELECT id, target_division, state, withheld_fields, deadline, created_at FROM notifications
           WHERE event_id = $1 ORDER BY target_division""",
        str(event_id),
    )
    return [dict(r) for r in rows]


def rest_client(stack: Stack, code: str = REST_ONLY) -> httpx.Client:
    """What a REST-only jurisdiction's own system is: its client of the exchange's API."""
    return httpx.Client(
        base_url=stack.service("migrant_exchange").url,
        headers={"Authorization": f"Bearer {stack.token(f'reg-{code}')}"},
        timeout=10,
    )
