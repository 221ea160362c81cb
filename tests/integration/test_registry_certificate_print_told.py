"""A print of a certificate reaches the holder's other registry's subject-access log, as a read of
her record does (``tell_read``): printing the 婚育证明 (its PDF or its QR code) discloses her name,
marital status and children to the printing client, and DESIGN section 8 wants every disclosure
in the audit that ``GET /v1/persons/{id}/disclosures`` reads, at both of her registries (real
PostgreSQL, the registry in-process over HTTP)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from tests.helpers import in_process_registry, person_id, query

HERE = "440703"  # the issuer: where she lives
ORIGIN = "320412"  # her household registration, another registry
SECRET = "certificate-print-told-secret"  # noqa: S105 - a throwaway credential of this test's own client


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "printtold", HERE, SECRET) as (client, dsn):
        yield client, dsn


def _told(dsn: str) -> list[dict[str, Any]]:
    rows = query(dsn, "SELECT value FROM outbox WHERE event_type = 'disclosure.recorded.v1' ORDER BY id")
    return [orjson.loads(r["value"])["data"] for r in rows]


def _certificate(client: TestClient, born: dt.date, hukou: str) -> tuple[str, str]:
    """A person living here, registered at ``hukou``, and a certificate issued to her here."""
    holder = person_id("F", born)
    person = {"id_number": holder, "name": "周晓梅", "sex": "F", "birth_date": born.isoformat(),
              "hukou_division": hukou, "residence_division": HERE}  # fmt: skip
    assert client.post("/v1/persons", json=person).status_code == 201
    r = client.post("/v1/certificates", json={"holder_id_number": holder})
    assert r.status_code == 201, r.text
    return holder, r.json()["certificate_number"]


def test_a_certificate_print_is_told_to_the_holders_other_registry(registry: tuple[TestClient, str]) -> None:
    client, dsn = registry
    holder, number = _certificate(client, dt.date(1991, 2, 3), ORIGIN)
    before = len(_told(dsn))

    pdf = client.get(f"/v1/certificates/{number}/document")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF"), pdf.text
    told = _told(dsn)[before:]
    assert len(told) == 1, told  # her origin's subject-access log names the printing client
    assert told[0]["record_at"] == [ORIGIN] and told[0]["discloser"] == HERE
    assert told[0]["recipient"] == "reg-printtold" and told[0]["recipient_division"] == HERE
    assert told[0]["purpose"] == "certificate_issuance"
    assert told[0]["certificate_number"] == number and told[0]["issuer"] == HERE
    assert holder not in orjson.dumps(told).decode()  # under her pseudonymous key only

    # the QR code is a print too (it carries the signed claims: her name, status, children)
    for kind in ("svg", "png"):
        assert client.get(f"/v1/certificates/{number}/qr.{kind}").status_code == 200
    assert [t["certificate_number"] for t in _told(dsn)[before:]] == [number] * 3
    # each print once in the local log as well, as before
    printed = query(
        dsn, "SELECT 1 FROM audit_log WHERE action = 'certificate.printed' AND detail->>'certificate_number' = $1",
        number,
    )  # fmt: skip
    assert len(printed) == 3


def test_a_print_of_an_own_residents_certificate_or_a_refused_one_tells_nobody(
    registry: tuple[TestClient, str],
) -> None:
    client, dsn = registry
    _, own = _certificate(client, dt.date(1990, 4, 5), HERE)  # no other registry keeps her
    before = len(_told(dsn))
    assert client.get(f"/v1/certificates/{own}/document").status_code == 200
    assert len(_told(dsn)) == before

    _, number = _certificate(client, dt.date(1989, 6, 7), ORIGIN)
    revoked = client.post(f"/v1/certificates/{number}/revocation", json={"reason": "marital status changed"})
    assert revoked.status_code == 200, revoked.text
    before = len(_told(dsn))
    assert client.get(f"/v1/certificates/{number}/document").status_code == 422  # not printed
    assert len(_told(dsn)) == before
