"""Certificates and keys, who may read what, the subject-access log and the OpenAPI document."""

from __future__ import annotations

import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from shared import signing
from tests.helpers import Api, person_id, query, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def apis(stack: Stack) -> dict[str, Api]:
    return {
        "origin": Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}"),
        "dest": Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}"),
        "dest_at_origin": Api(stack, f"registry-{ORIGIN}", f"reg-{DESTINATION}"),
        "kiosk_at_dest": Api(stack, f"registry-{DESTINATION}", f"kiosk-{DESTINATION}"),
        "dept_at_dest": Api(stack, f"registry-{DESTINATION}", f"dept-{DESTINATION}"),
        "operator_at_dest": Api(stack, f"registry-{DESTINATION}", "operator"),
    }


def register(api: Api, sex: str = "F") -> str:
    number = person_id(sex)
    r = api.post(
        "/v1/persons",
        {
            "id_number": number,
            "name": "读者",
            "sex": sex,
            "birth_date": f"{number[6:10]}-{number[10:12]}-{number[12:14]}",
            "hukou_division": ORIGIN,
        },
    )
    assert r.status_code == 201, r.text
    return number


def jwks_keys(api: Api) -> dict[str, bytes]:
    doc = api.get("/v1/keys").json()
    return {k["kid"]: signing.b64u_decode(k["x"]) for k in doc["keys"]}


def test_certificate_carries_a_signed_token_qr_images_and_can_be_revoked(
    stack: Stack, apis: dict[str, Api]
) -> None:
    origin = apis["origin"]
    holder = register(origin)
    r = origin.post("/v1/certificates", {"holder_id_number": holder})
    assert r.status_code == 201, r.text
    cert = r.json()
    assert cert["children_count"] == 0 and cert["marital_status"] == "unmarried"
    claims = signing.verify(cert["token"], jwks_keys(origin))
    assert claims["num"] == cert["certificate_number"] and claims["iss"] == ORIGIN
    assert holder not in cert["token"] and holder not in str(claims)  # only the pseudonymous key travels
    assert len(cert["token"]) < 1000  # fits a QR code comfortably

    svg = origin.http.get(cert["qr_svg"])
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in svg.content
    png = origin.http.get(cert["qr_png"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert apis["dest"].http.get(cert["qr_png"]).status_code == 404  # another jurisdiction's certificate

    path = f"/v1/certificates/{cert['certificate_number']}/revocation"
    r = origin.post(path, {"reason": "marital status changed"})
    assert r.status_code == 200, r.text
    assert r.json()["status_index"] == cert["status_index"]
    db = stack.service(f"registry-{ORIGIN}").dsn
    rows = query(
        db,
        "SELECT convert_from(value, 'UTF8') AS v FROM outbox WHERE event_type = 'certificate.revoked.v1' "
        "AND convert_from(value, 'UTF8') LIKE '%' || $1 || '%'",
        cert["certificate_number"],
    )
    assert len(rows) == 1 and f'"status_index":{cert["status_index"]}' in rows[0]["v"]
    again = origin.post(path, {"reason": "marital status changed"})
    assert again.status_code == 409 and again.json()["errors"][0]["rule"] == "already-revoked"
    assert origin.http.get(cert["qr_svg"]).status_code == 422
    assert (
        origin.post(f"/v1/certificates/{ORIGIN}-2026-NOSUCHNO/revocation", {"reason": "typo"}).status_code
        == 404
    )


def test_certificates_signed_before_a_rotation_still_verify_and_tampering_fails(apis: dict[str, Api]) -> None:
    origin = apis["origin"]
    holder = register(origin)
    old = origin.post("/v1/certificates", {"holder_id_number": holder}).json()
    rotated = origin.post("/v1/keys/rotation", {})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["active_kid"] != old["key_id"]
    new = origin.post("/v1/certificates", {"holder_id_number": holder}).json()
    assert new["key_id"] == rotated.json()["active_kid"]

    doc = origin.get("/v1/keys").json()
    by_kid = {k["kid"]: k for k in doc["keys"]}
    assert by_kid[old["key_id"]]["status"] == "retired" and by_kid[old["key_id"]]["expires_at"]
    assert by_kid[new["key_id"]]["status"] == "active" and by_kid[new["key_id"]]["jurisdiction"] == ORIGIN
    keys = jwks_keys(origin)
    assert signing.verify(old["token"], keys)["num"] == old["certificate_number"]
    assert signing.verify(new["token"], keys)["num"] == new["certificate_number"]

    header, payload, sig = old["token"].split(".")
    claims = signing.verify(old["token"], keys)
    forged = signing.b64u(
        signing.b64u_decode(payload).replace(
            claims["ms"].encode(), b"married" if claims["ms"] != "married" else b"widowed"
        )
    )
    with pytest.raises(signing.BadSignature):
        signing.verify(f"{header}.{forged}.{sig}", keys)
    with pytest.raises(signing.BadSignature):
        signing.verify(f"{header}.{payload}.{sig[:-4]}AAAA", keys)


def test_who_may_read_a_person(stack: Stack, apis: dict[str, Api]) -> None:
    origin, dest = apis["origin"], apis["dest"]
    stay, mover = register(origin), register(origin)
    r = origin.post(
        "/v1/migrations",
        {
            "kind": "departed",
            "id_number": mover,
            "from_division": ORIGIN,
            "to_division": DESTINATION,
            "migration_date": "2025-02-01",
        },
    )
    assert r.status_code == 201
    assert origin.get(f"/v1/persons/{stay}", purpose="registration").status_code == 200
    # Jurisdiction B cannot read A's resident who is not shared with it ...
    r = apis["dest_at_origin"].get(f"/v1/persons/{stay}", purpose="registration")
    assert r.status_code == 404 and r.json()["errors"][0]["rule"] == "person-must-exist"
    # ... but can read A's record of a migrant who moved to B.
    r = apis["dest_at_origin"].get(f"/v1/persons/{mover}", purpose="social_services")
    assert r.status_code == 200, r.text
    assert r.json()["jurisdiction"] == ORIGIN and "pregnancies" not in r.json()
    # A kiosk only verifies; an operator sees aggregates, never persons or pregnancies.
    r = apis["kiosk_at_dest"].get(f"/v1/persons/{mover}", purpose="registration")
    assert r.status_code == 403 and r.json()["errors"][0]["rule"] == "scope"
    assert apis["operator_at_dest"].get(f"/v1/persons/{mover}", purpose="maternal_care").status_code == 403
    assert apis["kiosk_at_dest"].post("/v1/persons", {}).status_code == 403
    anonymous = httpx.get(
        stack.service(f"registry-{ORIGIN}").url + f"/v1/persons/{stay}?purpose=registration"
    )
    assert anonymous.status_code == 401

    dest_db = stack.service(f"registry-{DESTINATION}").dsn
    wait_until(lambda: query(dest_db, "SELECT 1 FROM persons WHERE id_number = $1", mover))
    preg = dest.post("/v1/pregnancies", {"mother_id_number": mover, "registered_on": "2025-05-01"})
    assert preg.status_code == 201, preg.text
    pregnancy_path = f"/v1/pregnancies/{preg.json()['pregnancy_id']}"
    r = apis["operator_at_dest"].get(pregnancy_path, purpose="maternal_care")
    assert r.status_code == 403 and r.json()["errors"][0]["rule"] == "scope"
    assert apis["dept_at_dest"].get(pregnancy_path, purpose="maternal_care").status_code == 403
    assert dest.get(pregnancy_path, purpose="maternal_care").status_code == 200
    assert dest.get(pregnancy_path, purpose="social_services").status_code == 404  # not for this purpose
    # The department reads the person, but no pregnancy data; the registry of the destination does.
    dept = apis["dept_at_dest"].get(f"/v1/persons/{mover}", purpose="maternal_care")
    assert dept.status_code == 200 and "pregnancies" not in dept.json()
    care = dest.get(f"/v1/persons/{mover}", purpose="maternal_care")
    assert [p["pregnancy_id"] for p in care.json()["pregnancies"]] == [preg.json()["pregnancy_id"]]
    assert "migrations" not in care.json()  # disclosure is limited to what the purpose needs
    bad = origin.get("/v1/persons/11010119900307123X", purpose="registration")
    assert bad.status_code == 422 and "11010119900307123X" not in bad.text


def test_every_read_shows_in_the_subject_access_log(stack: Stack, apis: dict[str, Api]) -> None:
    origin = apis["origin"]
    person = register(origin)
    r = origin.post(
        "/v1/migrations",
        {
            "kind": "departed",
            "id_number": person,
            "from_division": ORIGIN,
            "to_division": DESTINATION,
            "migration_date": "2025-02-01",
        },
    )
    assert r.status_code == 201
    assert apis["dest_at_origin"].get(f"/v1/persons/{person}", purpose="social_services").status_code == 200

    def logged() -> list[dict]:
        log = origin.get(f"/v1/persons/{person}/disclosures")
        assert log.status_code == 200, log.text
        entries: list[dict] = log.json()["disclosures"]
        return entries if any(e["action"] == "notification.sent" for e in entries) else []

    entries = wait_until(logged, 15)  # the exchange reports whom it notified
    reads = [e for e in entries if e["action"] == "person.read"]
    assert reads[0]["client_id"] == f"reg-{DESTINATION}" and reads[0]["purpose"] == "social_services"
    [sent] = [e for e in entries if e["action"] == "notification.sent"]
    assert (
        sent["client_id"] == f"registry-{DESTINATION}" and sent["detail"]["recipient_division"] == DESTINATION
    )
    assert sent["detail"]["event_type"] == "migration.departed.v1" and sent["purpose"] == "registration"
    assert apis["dest_at_origin"].get(f"/v1/persons/{person}/disclosures").status_code == 404
    assert apis["kiosk_at_dest"].get(f"/v1/persons/{person}/disclosures").status_code == 403
    unknown = origin.get(f"/v1/persons/{person_id()}/disclosures")
    assert unknown.status_code == 404


def test_openapi_lists_every_endpoint_with_schemas_and_examples(stack: Stack) -> None:
    doc = httpx.get(stack.service(f"registry-{ORIGIN}").url + "/openapi.json").json()
    expected = {
        ("post", "/v1/persons"),
        ("post", "/v1/marriages"),
        ("post", "/v1/marriages/{marriage_id}/dissolution"),
        ("post", "/v1/migrations"),
        ("post", "/v1/pregnancies"),
        ("post", "/v1/pregnancies/{pregnancy_id}/closure"),
        ("post", "/v1/births"),
        ("post", "/v1/corrections"),
        ("post", "/v1/certificates"),
        ("post", "/v1/certificates/{number}/revocation"),
        ("get", "/v1/certificates/{number}/qr.svg"),
        ("get", "/v1/certificates/{number}/qr.png"),
        ("get", "/v1/persons/{id_number}"),
        ("get", "/v1/persons/{id_number}/disclosures"),
        ("get", "/v1/pregnancies/{pregnancy_id}"),
        ("get", "/v1/keys"),
        ("post", "/v1/keys/rotation"),
    }
    found = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert expected <= found
    schemas = doc["components"]["schemas"]

    def has_example(ref: dict) -> bool:
        name = ref["$ref"].rsplit("/", 1)[-1]
        return bool(schemas[name].get("examples"))

    for method, path in expected:
        op = doc["paths"][path][method]
        ok = next(v for k, v in op["responses"].items() if k.startswith("2"))
        content = ok["content"]
        if "application/json" in content:
            assert has_example(content["application/json"]["schema"]), (method, path)
        else:
            assert set(content) & {"image/svg+xml", "image/png"}, (method, path)
        if "requestBody" in op:
            assert has_example(op["requestBody"]["content"]["application/json"]["schema"]), (method, path)
        if method == "post":
            assert any(p["name"] == "Idempotency-Key" for p in op["parameters"]), path
        assert "422" in op["responses"] or path == "/v1/keys" or path.endswith("rotation"), path
