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


def seed(stack: Stack) -> dict[str, Any]:
    origin = stack.service(f"registry-{ORIGIN}").url
    dest = stack.service(f"registry-{DESTINATION}").url
    t_origin, t_dest = stack.token(f"reg-{ORIGIN}"), stack.token(f"reg-{DESTINATION}")
    with httpx.Client(timeout=10) as c:
        _post(
            c,
            f"{origin}/v1/persons",
            t_origin,
            "seed-mother",
            {
                "id_number": MOTHER,
                "name": "李秀英",
                "sex": "F",
                "birth_date": "1994-05-17",
                "hukou_division": ORIGIN,
            },
        )
        _post(
            c,
            f"{origin}/v1/migrations",
            t_origin,
            "seed-departure",
            {
                "kind": "departed",
                "id_number": MOTHER,
                "from_division": ORIGIN,
                "to_division": DESTINATION,
                "migration_date": "2024-03-01",
            },
        )
        _post(
            c,
            f"{dest}/v1/migrations",
            t_dest,
            "seed-arrival",
            {
                "kind": "arrived",
                "id_number": MOTHER,
                "from_division": ORIGIN,
                "to_division": DESTINATION,
                "migration_date": "2024-03-02",
                "name": "李秀英",
                "hukou_division": ORIGIN,
            },
        )
        _post(
            c,
            f"{dest}/v1/births",
            t_dest,
            "seed-birth",
            {
                "medical_certificate_number": "O440000001",
                "child_name": "李小明",
                "child_sex": "M",
                "child_birth_date": (dt.date.today() - dt.timedelta(days=30)).isoformat(),
                "mother_id_number": MOTHER,
            },
        )
        cert = _post(
            c, f"{origin}/v1/certificates", t_origin, "seed-certificate", {"holder_id_number": MOTHER}
        )
    return {"mother_id_number": MOTHER, "certificate_number": cert["certificate_number"]}
