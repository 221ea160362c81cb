"""``exchangectl keys revoke``: a compromised certificate-signing key is refused online at once and
offline with the next status list (a stack of its own: the test revokes a registry's keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.offline_verifier import OfflineVerifier
from shared.signing import b64u_decode
from tests.helpers import Api, person_id, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture

pytestmark = pytest.mark.e2e
runner = CliRunner()


kstack = stack_fixture(
    "kstack", StackSpec("keyrev", db_prefix="keyrev_", extra_env={"KEY_REFRESH_SECONDS": "1"})
)


def ctl(stack_file: Path, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--stack", str(stack_file), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _certificate(origin: Api) -> dict[str, Any]:
    holder = person_id("F")
    born = f"{holder[6:10]}-{holder[10:12]}-{holder[12:14]}"
    body = {"id_number": holder, "name": "陈静", "sex": "F", "birth_date": born, "hukou_division": ORIGIN}
    assert origin.post("/v1/persons", body).status_code == 201
    r = origin.post("/v1/certificates", {"holder_id_number": holder})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _online(kiosk: Api, token: str) -> str:
    r = kiosk.post("/v1/verifications/token", {"token": token, "purpose": "benefits"})
    assert r.status_code == 200, r.text
    return str(r.json()["result"])


def test_a_revoked_key_is_refused_online_at_once_and_offline_with_the_next_status_list(kstack: Stack) -> None:
    origin = Api(kstack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    kiosk = Api(kstack, "verification", f"kiosk-{DESTINATION}")
    base = kstack.service("verification").url
    cert = _certificate(origin)
    assert _online(kiosk, cert["token"]) == "valid"
    keys_before = httpx.get(base + "/v1/keys").json()
    list_before = httpx.get(f"{base}/v1/status-lists/{ORIGIN}").json()
    assert OfflineVerifier(keys_before, [list_before]).verify(cert["token"], "benefits").result == "valid"

    done = ctl(kstack.run_dir / "stack.json", "keys", "revoke", "-j", ORIGIN, "--kid", cert["key_id"])
    assert done["verification"] == "now"
    assert _online(kiosk, cert["token"]) == "revoked"  # at once: no refresh, no wait

    # offline: a kiosk still holding the old key download gets the next status list
    list_after = httpx.get(f"{base}/v1/status-lists/{ORIGIN}").json()
    assert cert["key_id"] in list_after["credential"]["credentialSubject"]["revokedKeys"]
    token_list = httpx.get(
        f"{base}/v1/status-lists/{ORIGIN}", headers={"Accept": "application/statuslist+jwt"}
    ).text  # what the kiosk page holds offline names the key too
    claims = json.loads(b64u_decode(token_list.split(".")[1]))
    assert cert["key_id"] in claims["revoked_keys"]
    stale = OfflineVerifier(keys_before, [list_after]).verify(cert["token"], "benefits")
    assert stale.result == "revoked" and stale.reason == "the issuer revoked the signing key"
    keys_after = httpx.get(base + "/v1/keys").json()
    assert cert["key_id"] not in {k["kid"] for k in keys_after["keys"]}
    assert (
        OfflineVerifier(keys_after, [list_after]).verify(cert["token"], "benefits").result
        == "invalid_signature"
    )

    # the registry lists the key as revoked and signs the next certificate with a new one
    registry_keys = httpx.get(kstack.service(f"registry-{ORIGIN}").url + "/v1/keys").json()["keys"]
    assert {k["kid"]: k["status"] for k in registry_keys}[cert["key_id"]] == "revoked"
    listed = ctl(kstack.run_dir / "stack.json", "keys", "list", "-j", ORIGIN)
    assert {k["kid"]: k["state"] for k in listed}[cert["key_id"]] == "revoked"
    fresh = _certificate(origin)
    assert fresh["key_id"] != cert["key_id"]
    assert wait_until(lambda: _online(kiosk, fresh["token"]) == "valid")

    # the registry's JWKS, read again after a restart, does not bring the key back
    kstack.restart_service(kstack.service("verification"))
    assert _online(kiosk, cert["token"]) == "revoked"


def test_verification_learns_a_revocation_from_the_issuers_jwks_alone(kstack: Stack) -> None:
    """An operator who cannot reach verification's database: the registry's JWKS carries it."""
    origin = Api(kstack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    kiosk = Api(kstack, "verification", f"kiosk-{DESTINATION}")
    cert = _certificate(origin)
    assert wait_until(lambda: _online(kiosk, cert["token"]) == "valid")
    only_registry = kstack.run_dir / "registry-only.json"
    doc = json.loads((kstack.run_dir / "stack.json").read_text())
    doc["databases"] = {k: v for k, v in doc["databases"].items() if k.startswith("registry")}
    only_registry.write_text(json.dumps(doc))
    done = ctl(only_registry, "keys", "revoke", "-j", ORIGIN, "--kid", cert["key_id"])
    assert done["verification"].startswith("at its next key refresh")
    assert wait_until(lambda: _online(kiosk, cert["token"]) == "revoked", timeout=10)
