"""``exchangectl audit verify --anchor``: the chain checked against signed checkpoints on the broker.

The verification service alone (its own database prefix and broker), because the test alters
and deletes audit rows as a superuser.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.helpers import person_id, query, rewrite_audit_chain, tamper, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture
from tests.verification_kit import VerificationStack

pytestmark = pytest.mark.e2e
runner = CliRunner()


vstack = stack_fixture("vstack", StackSpec("anchor_", db_prefix="anchor_", kind=VerificationStack))


def _stack_file(s: VerificationStack) -> Path:
    """What ``make run`` writes for the CLI: the database, the broker, the pinned checkpoint keys."""
    path = s.run_dir / "anchor-stack.json"
    doc = {
        "databases": {"verification": s.dsn},
        "broker": {"bootstrap_servers": s.bootstrap},
        "audit_checkpoint_keys": s.audit_public_keys(),
    }
    path.write_text(json.dumps(doc))
    return path


def _verify(s: VerificationStack, *extra: str, code: int | None = 0) -> dict[str, Any]:
    args = ["audit", "verify", "--service", "verification", "--json", "--stack", str(_stack_file(s))]
    result = runner.invoke(app, [*args, *extra])
    assert code is None or result.exit_code == code, result.output
    [row] = json.loads(result.stdout)
    return row  # type: ignore[no-any-return]


def _audited_verifications(s: VerificationStack, n: int) -> int:
    headers = {"Authorization": f"Bearer {s.token('kiosk-440703')}"}
    for i in range(n):
        body = {"certificate_number": f"NX-{i}", "holder_id_number": person_id(), "purpose": "benefits"}
        r = httpx.post(s.url + "/v1/verifications", json=body, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
    return int(
        wait_until(
            lambda: (
                not query(s.dsn, "SELECT 1 FROM audit_pending LIMIT 1")
                and query(s.dsn, "SELECT max(seq) AS m FROM audit_log")[0]["m"]
            )
        )
    )


def test_the_anchor_names_the_first_changed_or_missing_row(vstack: VerificationStack) -> None:
    head = _audited_verifications(vstack, 6)
    assert head >= 6
    # the service checkpoints its head every 2 s (AUDIT_CHECKPOINT_INTERVAL in the devstack)
    report = wait_until(
        lambda: (r := _verify(vstack, "--anchor", code=None))["anchor_seq"] == head and r, timeout=15
    )
    assert report["intact"] is True and report["first_broken_seq"] is None

    # a row changed by a superuser (triggers off): named
    changed = head - 3
    original = query(vstack.dsn, "SELECT purpose FROM audit_log WHERE seq = $1", changed)[0]["purpose"]
    tamper(vstack.dsn, "UPDATE audit_log SET purpose = 'identity_check' WHERE seq = $1", changed)
    try:
        report = _verify(vstack, "--anchor", code=1)
        assert report["intact"] is False and report["first_broken_seq"] == changed
    finally:
        tamper(vstack.dsn, "UPDATE audit_log SET purpose = $2 WHERE seq = $1", changed, original)
    assert _verify(vstack, "--anchor")["intact"] is True

    # the tail cut off: the chain alone still checks, the anchor names the first missing row
    saved = query(vstack.dsn, "SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq", head - 1)
    tamper(vstack.dsn, "DELETE FROM audit_log WHERE seq >= $1", head - 1)
    try:
        assert _verify(vstack)["intact"] is True
        report = _verify(vstack, "--anchor", code=1)
        assert report["intact"] is False and report["first_broken_seq"] == head - 1
    finally:
        for r in saved:
            tamper(
                vstack.dsn,
                """INSERT INTO audit_log (seq, at, client_id, action, purpose, subject, detail, prev_hash, hash)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)""",
                *(r[c] for c in ("seq", "at", "client_id", "action", "purpose", "subject", "detail")),
                r["prev_hash"],
                r["hash"],
            )
    assert _verify(vstack, "--anchor")["intact"] is True


def test_a_rewritten_chain_checks_alone_but_not_against_the_anchor(vstack: VerificationStack) -> None:
    """A writer who recomputes every hash from the changed row on leaves a chain that checks;
    the signed heads outside the database do not match it, and the earlier ones that still do
    bound where the rewrite began."""
    checkpointed = []
    for _ in range(2):
        head = _audited_verifications(vstack, 2)
        wait_until(lambda: _verify(vstack, "--anchor", code=None)["anchor_seq"] == head, timeout=15)  # noqa: B023
        checkpointed.append(head)
    first, last = checkpointed
    saved = query(vstack.dsn, "SELECT seq, prev_hash, hash, detail FROM audit_log WHERE seq > $1", first)
    try:
        _rewrite_from(vstack.dsn, first + 1)
        assert _verify(vstack)["intact"] is True
        report = _verify(vstack, "--anchor", code=1)
        assert report["intact"] is False and report["first_broken_seq"] == last
        assert report["unchanged_through_seq"] == first  # the rewrite began after this row
    finally:
        for r in saved:
            tamper(
                vstack.dsn,
                "UPDATE audit_log SET prev_hash = $2, hash = $3, detail = $4 WHERE seq = $1",
                r["seq"],
                r["prev_hash"],
                r["hash"],
                r["detail"],
            )
    report = _verify(vstack, "--anchor")
    assert report["intact"] is True and report["unchanged_through_seq"] == last


def _rewrite_from(dsn: str, seq: int) -> None:
    import asyncio

    import asyncpg

    from shared.db import init_connection

    async def rewrite() -> None:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        try:
            await rewrite_audit_chain(conn, seq)
        finally:
            await conn.close()

    asyncio.run(rewrite())


def test_a_checkpoint_forged_on_the_broker_is_not_trusted(vstack: VerificationStack) -> None:
    """Whoever can write to the topic but lacks the service's key cannot move the anchor."""
    import asyncio
    import datetime as dt

    from aiokafka import AIOKafkaProducer

    from shared.audit_anchor import CHECKPOINT_TOPIC, load_key, sign_checkpoint
    from shared.signing import b64u, new_private_key, private_bytes

    head = _audited_verifications(vstack, 2)
    genuine = wait_until(
        lambda: (r := _verify(vstack, "--anchor", code=None))["anchor_seq"] == head and r, timeout=15
    )
    assert genuine["intact"] is True
    forger = load_key(b64u(private_bytes(new_private_key())))
    forged = sign_checkpoint("verification", (head + 1000, b"\0" * 32), forger, dt.datetime.now(dt.UTC))

    async def publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=vstack.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(CHECKPOINT_TOPIC, forged.encode(), key=b"verification")
        finally:
            await producer.stop()

    asyncio.run(publish())
    report = _verify(vstack, "--anchor")
    assert report["anchor_seq"] == head and report["intact"] is True  # the forgery was skipped
    # pinned to the forger's key instead, the genuine checkpoints do not count, and the
    # forged one names a row the chain does not have
    forger_pin = "verification=" + b64u(forger.public_raw)
    report = _verify(vstack, "--anchor", "--anchor-key", forger_pin, code=1)
    assert report["anchor_seq"] == head + 1000 and report["first_broken_seq"] == head + 1


def test_the_running_service_connects_as_a_role_that_cannot_change_audit_rows(
    vstack: VerificationStack,
) -> None:
    import asyncpg

    head = _audited_verifications(vstack, 1)
    svc = vstack.service("verification")
    role = query(svc.service_dsn, "SELECT current_user AS u")[0]["u"]
    assert role.endswith("_svc") and role != query(svc.dsn, "SELECT current_user AS u")[0]["u"]
    users = {
        r["usename"]
        for r in query(svc.dsn, "SELECT usename FROM pg_stat_activity WHERE datname = current_database()")
    }
    assert role in users  # the service's pool logs in as it
    for sql in (
        "UPDATE audit_log SET purpose = 'identity_check' WHERE seq = $1",
        "DELETE FROM audit_log WHERE seq = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            query(svc.service_dsn, sql, head)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        query(svc.service_dsn, "TRUNCATE audit_log")
    assert _verify(vstack, "--anchor", code=None)["first_broken_seq"] is None
