"""``exchangectl clients`` against a running service: create, rotate with overlap, revoke, remove.

The verification service alone (its own database prefix and broker); each credential is
tried over real HTTP, before and after a restart of the service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from shared.clients_file import read_document, read_file, write_file
from tests.helpers import person_id, query, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture
from tests.verification_kit import VerificationStack

pytestmark = pytest.mark.e2e
runner = CliRunner()


vstack = stack_fixture("vstack", StackSpec("clients_", db_prefix="clients_", kind=VerificationStack))


def _stack_file(s: VerificationStack) -> Path:
    path = s.run_dir / "clients-stack.json"
    path.write_text(
        json.dumps({"databases": {"verification": s.dsn}, "clients_file": str(s.run_dir / "clients.yaml")})
    )
    return path


def ctl(s: VerificationStack, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["clients", *args, "--stack", str(_stack_file(s)), "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result.output


def status(s: VerificationStack, token: str) -> int:
    body = {"certificate_number": "NX-1", "holder_id_number": person_id(), "purpose": "benefits"}
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(s.url + "/v1/verifications", json=body, headers=headers, timeout=10).status_code


def test_create_rotate_with_overlap_revoke_and_restart(vstack: VerificationStack) -> None:
    created = ctl(vstack, "create", "--id", "kiosk-lobby", "--kind", "kiosk", "-j", "440703")
    assert created["applied_to"] == ["verification"]
    first = created["token"]
    assert wait_until(lambda: status(vstack, first) == 200)
    file_text = (vstack.run_dir / "clients.yaml").read_text()
    assert first.split(".", 1)[1] not in file_text  # the secret is shown once, stored nowhere

    created_in = read_document(vstack.run_dir / "clients.yaml").revision
    assert created_in is not None
    rotated = ctl(vstack, "rotate", "--id", "kiosk-lobby", "--overlap-hours", "1")
    second = rotated["token"]
    # every edit raises the file's revision, and the database records the one it applied
    assert read_document(vstack.run_dir / "clients.yaml").revision == created_in + 1
    [applied] = query(vstack.dsn, "SELECT revision FROM clients_file_applied")
    assert applied["revision"] == created_in + 1
    assert second != first
    assert wait_until(lambda: status(vstack, second) == 200)
    assert status(vstack, first) == 200  # inside the overlap the old credential still works
    [listed] = [c for c in ctl(vstack, "list") if c["client_id"] == "kiosk-lobby"]
    assert listed["state"] == "rotating" and "secret_hash" not in listed

    ctl(vstack, "revoke", "--id", "kiosk-lobby")
    wait_until(lambda: status(vstack, second) == 401, timeout=1.0)  # at once, through NOTIFY
    assert status(vstack, first) == 401

    vstack.restart_service(vstack.service("verification"))
    assert status(vstack, second) == 401 and status(vstack, first) == 401
    [listed] = [c for c in ctl(vstack, "list") if c["client_id"] == "kiosk-lobby"]
    assert listed["state"] == "revoked"
    refused = ctl(vstack, "create", "--id", "kiosk-lobby", "--kind", "kiosk", "-j", "440703", code=2)
    assert "was revoked (ids are never reused)" in refused


def test_a_client_taken_out_of_the_file_is_revoked_by_the_running_service(vstack: VerificationStack) -> None:
    token = ctl(vstack, "create", "--id", "kiosk-hall", "--kind", "kiosk", "-j", "440703")["token"]
    assert wait_until(lambda: status(vstack, token) == 200)
    path = vstack.run_dir / "clients.yaml"
    write_file(path, [e for e in read_file(path) if e.client_id != "kiosk-hall"])  # an operator's edit
    assert wait_until(lambda: status(vstack, token) == 401, timeout=6.0)  # the service watches the file
    [row] = query(vstack.dsn, "SELECT revoked_at FROM clients WHERE client_id = 'kiosk-hall'")
    assert row["revoked_at"] is not None
    vstack.restart_service(vstack.service("verification"))
    assert status(vstack, token) == 401


def test_scopes_are_checked_against_the_kind(vstack: VerificationStack) -> None:
    before = (vstack.run_dir / "clients.yaml").read_text()
    out = ctl(vstack, "create", "--id", "ops-2", "--kind", "operator", "--scope", "pregnancy:read", code=2)
    assert "may not hold 'pregnancy:read'" in out
    out = ctl(
        vstack,
        "create",
        "--id",
        "kiosk-x",
        "--kind",
        "kiosk",
        "--scope",
        "persons:write",
        "-j",
        "440703",
        code=2,
    )
    assert "may not hold 'persons:write'" in out
    assert (vstack.run_dir / "clients.yaml").read_text() == before


def test_the_exchanges_credential_is_a_service_client_and_no_operator_gets_its_scope(
    vstack: VerificationStack,
) -> None:
    """The registries' internal reconciliation takes ``reconcile:internal``: a ``service`` client
    holds it (no home jurisdiction), an operator may not (DESIGN.md section 10)."""
    out = ctl(
        vstack, "create", "--id", "ops-3", "--kind", "operator", "--scope", "reconcile:internal", code=2
    )
    assert "a client of kind operator may not hold 'reconcile:internal'" in " ".join(out.split())
    ctl(vstack, "create", "--id", "exchange-svc", "--kind", "service")
    listed = {c["client_id"]: c for c in ctl(vstack, "list")}
    assert listed["exchange-svc"]["scopes"] == ["reconcile:internal"]
    assert listed["exchange-svc"]["jurisdiction"] is None
    [row] = query(vstack.dsn, "SELECT kind, scopes FROM clients WHERE client_id = 'exchange-svc'")
    assert (row["kind"], list(row["scopes"])) == ("service", ["reconcile:internal"])


def test_a_command_on_a_copy_of_the_file_behind_the_one_in_use_says_so(vstack: VerificationStack) -> None:
    """An operator edits an old copy of the clients file (one the database has applied a later
    revision than): the command fails naming the service that is ahead, and that database keeps
    its clients (the kiosk the old copy does not list is not revoked)."""
    current = vstack.run_dir / "clients.yaml"
    ctl(vstack, "create", "--id", "kiosk-kept", "--kind", "kiosk", "-j", "440703")
    kept = ctl(vstack, "rotate", "--id", "kiosk-kept", "--overlap-hours", "1")["token"]  # two edits
    [applied] = query(vstack.dsn, "SELECT revision FROM clients_file_applied")
    old_copy = vstack.run_dir / "clients-old.yaml"
    entries = [e for e in read_file(current) if e.client_id != "kiosk-kept"]
    write_file(old_copy, entries, revision=applied["revision"] - 2)  # saved two edits ago
    args = [
        "clients",
        "create",
        "--id",
        "kiosk-late",
        "--kind",
        "kiosk",
        "-j",
        "440703",
        "--file",
        str(old_copy),
    ]
    result = runner.invoke(app, [*args, "--stack", str(_stack_file(vstack))])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "verification (revision" in said and "is behind the one in use" in said, said
    assert read_document(old_copy).revision == applied["revision"] - 2  # left unwritten
    assert status(vstack, kept) == 200
    [row] = query(vstack.dsn, "SELECT revoked_at FROM clients WHERE client_id = 'kiosk-kept'")
    assert row["revoked_at"] is None
