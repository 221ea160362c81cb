"""Demo data for ``make run``: a woman registered at the origin moves to the destination and gives birth.

Every POST carries an Idempotency-Key, so seeding again on the next ``make run`` changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.identity import compose_id_number

MOTHER = compose_id_number("110101", dt.date(1994, 5, 17), 2, "F")
FATHER = compose_id_number("110101", dt.date(1992, 8, 3), 1, "M")


def _post(client: httpx.Client, url: str, token: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(url, json=body, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})
    if r.status_code >= 400:
        raise RuntimeError(f"seeding {url} failed: {r.status_code} {r.text}")
    return r.json()  # type: ignore[no-any-return]


def _moves() -> list[tuple[str, str, str, dict[str, Any]]]:
    """The mother registered at the origin, her departure there and her arrival at the
    destination: (jurisdiction, path, Idempotency-Key, body) in the order they are posted."""
    migration = {"id_number": MOTHER, "from_division": ORIGIN, "to_division": DESTINATION}
    return [
        (
            ORIGIN,
            "/v1/persons",
            "seed-mother",
            {
                "id_number": MOTHER,
                "name": "李秀英",
                "sex": "F",
                "birth_date": "1994-05-17",
                "hukou_division": ORIGIN,
            },
        ),
        (
            ORIGIN,
            "/v1/migrations",
            "seed-departure",
            {"kind": "departed", **migration, "migration_date": "2024-03-01"},
        ),
        (
            DESTINATION,
            "/v1/migrations",
            "seed-arrival",
            {
                "kind": "arrived",
                **migration,
                "migration_date": "2024-03-02",
                "name": "李秀英",
                "hukou_division": ORIGIN,
            },
        ),
    ]


def _birth() -> dict[str, Any]:
    return {
        "medical_certificate_number": "O440000001",
        "child_name": "李小明",
        "child_sex": "M",
        "child_birth_date": (dt.date.today() - dt.timedelta(days=30)).isoformat(),
        "mother_id_number": MOTHER,
    }


def seed(stack: Stack) -> dict[str, Any]:
    url = {code: stack.service(f"registry-{code}").url for code in (ORIGIN, DESTINATION)}
    token = {code: stack.token(f"reg-{code}") for code in (ORIGIN, DESTINATION)}
    with httpx.Client(timeout=10) as c:
        for code, path, key, body in _moves():
            _post(c, url[code] + path, token[code], key, body)
        _post(c, f"{url[DESTINATION]}/v1/births", token[DESTINATION], "seed-birth", _birth())
        cert = _post(
            c,
            f"{url[ORIGIN]}/v1/certificates",
            token[ORIGIN],
            "seed-certificate",
            {"holder_id_number": MOTHER},
        )
    return {"mother_id_number": MOTHER, "certificate_number": cert["certificate_number"]}
