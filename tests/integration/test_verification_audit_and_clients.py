"""Verification's audit of offline checks, a token naming no key it could have, and the finality of
client revocations (real PostgreSQL; the verification app in-process, no broker, no background
tasks). Each test failed when an adversarial review found its defect."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared import signing
from shared.auth import ClientRegistry, new_credential
from shared.clients_file import ClientSources, sync_clients, write_file
from shared.db import create_pool, ensure_login_role, migrate
from shared.errors import Unauthorized
from tests.helpers import kiosk_entry

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "services" / "verification" / "migrations"


_kiosk = kiosk_entry


def test_one_unusable_scan_does_not_cost_a_batch_of_offline_checks_their_audit(
    fresh_db: str, tmp_path: Path
) -> None:
    """The reference kiosk queues every offline check (kiosk.js ``checkOffline``: whatever was
    scanned or typed) and, when a batch answers 422, drops the whole batch for good (offline.js
    ``flush``: "a 422 batch would never pass"). The endpoint refuses a whole batch of up to 500
    checks for one scan shorter than 10 characters (``OfflineCheckIn.token`` min_length), so the
    genuine checks in it are never audited: DESIGN s.8, every verification is audited."""
    from fastapi.testclient import TestClient

    from services.verification.entrypoints.app import create_app
    from services.verification.settings import VerificationSettings

    issuer_key = signing.new_private_key()

    async def prepare() -> None:
        await migrate(fresh_db, "verification", MIGRATIONS)
        conn = await asyncpg.connect(fresh_db)
        try:
            await conn.execute(
                "INSERT INTO issuer_keys (kid, issuer, public_key, status, source) "
                "VALUES ('320412-k1', '320412', $1, 'active', 'test')",
                signing.public_bytes(issuer_key),
            )
        finally:
            await conn.close()

    asyncio.run(prepare())
    token, _ = new_credential("kiosk-off")
    clients = tmp_path / "clients.yaml"
    write_file(clients, [_kiosk("kiosk-off", token)])
    genuine = signing.sign(
        {"iss": "320412", "num": "320412-2026-AAAAAAAA", "sub": "f" * 64, "exp": "2999-01-01", "sti": 1},
        issuer_key,
        "320412-k1",
    )
    now = dt.datetime.now(dt.UTC).isoformat()
    checks = [
        {"token": genuine, "purpose": "benefits", "result": "valid", "checked_at": now},
        {"token": "12345", "purpose": "benefits", "result": "invalid_signature", "checked_at": now},
    ]
    app = create_app(
        VerificationSettings(database_url=fresh_db, clients_file=str(clients), run_background=False)
    )
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        r = client.post("/v1/verifications/offline", json={"checks": checks})
        audited = asyncio.run(_count_offline_entries(fresh_db))
    # Every check reaches the audit log whatever else the batch carried, the bad scan as not genuine.
    assert r.status_code == 200 and r.json() == {"recorded": 2, "genuine": 1}, r.text
    assert audited == 2


async def _count_offline_entries(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT (SELECT count(*) FROM audit_pending WHERE detail->>'via' = 'offline')"
                " + (SELECT count(*) FROM audit_log WHERE detail->>'via' = 'offline')"
            )
        )
    finally:
        await conn.close()


def test_a_token_naming_an_unstorable_kid_is_answered_not_a_nameless_422(
    fresh_db: str, tmp_path: Path
) -> None:
    """A token whose header ``kid`` carries a NUL (inside the base64, so the edge's NUL check does
    not see it) reaches ``repository.key_of`` and PostgreSQL refuses the text: the answer is a
    422 "storable-value" naming no field, and nothing is audited. An unknown kid is
    ``invalid_signature`` (audited); at the least the problem must name the field ``token``."""
    from fastapi.testclient import TestClient

    from services.verification.entrypoints.app import create_app
    from services.verification.settings import VerificationSettings

    asyncio.run(migrate(fresh_db, "verification", MIGRATIONS))
    token, _ = new_credential("kiosk-nul")
    clients = tmp_path / "clients.yaml"
    write_file(clients, [_kiosk("kiosk-nul", token)])
    header = signing.b64u(b'{"alg":"EdDSA","kid":"k\\u0000"}')
    forged = f"{header}.{signing.b64u(b'{}')}.{signing.b64u(bytes(64))}"
    app = create_app(
        VerificationSettings(database_url=fresh_db, clients_file=str(clients), run_background=False)
    )
    # raise_server_exceptions=False: the answer a real client gets (Starlette re-raises after it)
    with TestClient(
        app, headers={"Authorization": f"Bearer {token}"}, raise_server_exceptions=False
    ) as client:
        r = client.post("/v1/verifications/token", json={"token": forged, "purpose": "benefits"})
    assert r.status_code == 200 and r.json()["result"] == "invalid_signature", r.text  # a key nobody has


def _as(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{role}:@{host}", parts.path, parts.query, parts.fragment))


async def test_the_service_role_cannot_undo_a_revocation_by_deleting_the_row(
    fresh_db: str, tmp_path: Path
) -> None:
    """ "Revoked stays revoked" (DESIGN s.10); 0004 says "a revocation is final (the database
    refuses to undo it)". The trigger guards UPDATE only, and the service role holds DELETE and
    TRUNCATE on ``clients``: deleting the revoked row lets any later (or restored) copy of the
    clients file that lists the client bring its old credential back."""
    role = urlsplit(fresh_db).path.strip("/") + "_svc"
    admin = await asyncpg.connect(fresh_db)
    try:
        await ensure_login_role(admin, role)
    finally:
        await admin.close()
    await migrate(fresh_db, "verification", MIGRATIONS, service_role=role)
    token, _ = new_credential("kiosk-gone")
    path = tmp_path / "clients.yaml"
    service_dsn = _as(fresh_db, role)
    pool = await create_pool(service_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await sync_clients(conn, [_kiosk("kiosk-gone", token, revoked=True)])
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT revoked_at FROM clients WHERE client_id='kiosk-gone'")
            with pytest.raises(asyncpg.CheckViolationError):  # the service's own role cannot take it away
                await conn.execute("DELETE FROM clients WHERE client_id = 'kiosk-gone'")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("TRUNCATE clients")
        write_file(path, [_kiosk("kiosk-gone", token)])  # a copy of the file from before
        registry = ClientRegistry(pool, service_dsn, ClientSources(str(path)))
        await registry.start()
        try:
            with pytest.raises(Unauthorized):
                registry.authenticate(f"Bearer {token}")  # refused: the revocation stands
        finally:
            await registry.stop()
    finally:
        await pool.close()
