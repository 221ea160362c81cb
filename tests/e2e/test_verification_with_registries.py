"""Verification with the real registries of the session stack: keys from their JWKS, tokens they sign."""

from __future__ import annotations

import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.offline_verifier import OfflineVerifier
from tests.helpers import Api, person_id, wait_until

pytestmark = pytest.mark.e2e


def _register(origin: Api) -> str:
    holder = person_id("F")
    born = f"{holder[6:10]}-{holder[10:12]}-{holder[12:14]}"
    body = {"id_number": holder, "name": "陈静", "sex": "F", "birth_date": born, "hukou_division": ORIGIN}
    assert origin.post("/v1/persons", body).status_code == 201
    return holder


def test_a_registry_signed_token_verifies_online_and_offline_across_a_rotation(stack: Stack) -> None:
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    kiosk = Api(stack, "verification", f"kiosk-{DESTINATION}")
    holder = _register(origin)
    old = origin.post("/v1/certificates", {"holder_id_number": holder}).json()

    def token_result(token: str, **extra: str) -> str:
        r = kiosk.post(
            "/v1/verifications/token", {"token": token, "purpose": "arrival_registration", **extra}
        )
        assert r.status_code == 200, r.text
        return str(r.json()["result"])

    # The kid may be new to the verification service: it fetches the registries' JWKS at once.
    assert token_result(old["token"], holder_id_number=holder) == "valid"
    assert token_result(old["token"], holder_id_number=person_id("M")) == "holder_mismatch"

    assert origin.post("/v1/keys/rotation", {}).status_code == 200
    new = origin.post("/v1/certificates", {"holder_id_number": holder}).json()
    assert new["key_id"] != old["key_id"]
    assert token_result(new["token"]) == "valid"
    assert token_result(old["token"]) == "valid"  # the retired key stays published in its overlap

    assert origin.post(
        f"/v1/certificates/{old['certificate_number']}/revocation", {"reason": "replaced"}
    ).is_success
    wait_until(lambda: token_result(old["token"]) == "revoked", timeout=5)

    base = stack.service("verification").url
    published = httpx.get(base + "/v1/keys").json()
    kids = {k["kid"]: k for k in published["keys"]}
    assert kids[old["key_id"]]["status"] == "retired" and kids[new["key_id"]]["status"] == "active"
    offline = OfflineVerifier(published, [httpx.get(f"{base}/v1/status-lists/{ORIGIN}").json()])
    assert offline.verify(old["token"], "benefits").result == "revoked"
    fresh = offline.verify(new["token"], "benefits")
    assert fresh.result == "valid" and fresh.attributes["holder_name"] == "陈静"
    assert "cbd" not in fresh.attributes and "children_birth_dates" not in fresh.attributes
