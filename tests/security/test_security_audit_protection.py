"""Audit rows cannot be changed by the services' own database role (grants and a trigger)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared import audit
from shared.db import ensure_login_role, grant_service_role, init_connection, migrate

ROOT = Path(__file__).resolve().parents[2]


def _role_for(dsn: str) -> str:
    return urlsplit(dsn).path.strip("/") + "_svc"


def _as(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{role}:@{host}", parts.path, parts.query, parts.fragment))


async def _service_connection(dsn: str, role: str) -> asyncpg.Connection:
    admin = await asyncpg.connect(dsn)
    try:
        await ensure_login_role(admin, role)
    finally:
        await admin.close()
    await migrate(dsn, "verification", ROOT / "services" / "verification" / "migrations", service_role=role)
    conn = await asyncpg.connect(_as(dsn, role))
    await init_connection(conn)
    return conn


def _entries(n: int) -> list[audit.AuditEntry]:
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return [
        audit.AuditEntry("kiosk-1", "certificate.verify", "benefits", f"{i:064x}", {"i": i}, t0)
        for i in range(n)
    ]


async def test_the_service_role_appends_but_cannot_update_delete_or_truncate(fresh_db: str) -> None:
    role = _role_for(fresh_db)
    conn = await _service_connection(fresh_db, role)
    try:
        assert await conn.fetchval("SELECT current_user") == role
        async with conn.transaction():  # one row (INSERT) and a batch (binary COPY) both work
            await audit.append(conn, _entries(1))
            await audit.append(conn, _entries(5))
        assert await audit.verify_chain(conn) is None
        assert (await audit.head(conn) or (0, b""))[0] == 6
        # the rest of the service's tables stay writable
        await conn.execute("INSERT INTO inbox (consumer, event_id) VALUES ('c', gen_random_uuid())")
        assert await conn.execute("DELETE FROM inbox WHERE consumer = 'c'") == "DELETE 1"

        for statement in (
            "UPDATE audit_log SET purpose = 'identity_check' WHERE seq = 3",
            "DELETE FROM audit_log WHERE seq = 6",
            "TRUNCATE audit_log",
            "UPDATE schema_migrations SET checksum = 'x'",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        # nor can it take the trigger away or give itself the rights back
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_or_delete")
        await conn.execute(f'GRANT UPDATE ON audit_log TO "{role}"')  # a warning: no grant option
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE audit_log SET purpose = 'identity_check' WHERE seq = 3")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 6
        assert await audit.verify_chain(conn) is None
    finally:
        await conn.close()


async def test_the_trigger_refuses_even_the_owner(fresh_db: str) -> None:
    """Grants alone would not stop the owner; the trigger does, until a superuser turns it off."""
    conn = await _service_connection(fresh_db, _role_for(fresh_db))
    await conn.close()
    owner = await asyncpg.connect(fresh_db)
    await init_connection(owner)
    try:
        async with owner.transaction():
            await audit.append(owner, _entries(3))
        for statement in ("UPDATE audit_log SET detail = '{}' WHERE seq = 2", "DELETE FROM audit_log"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await owner.execute(statement)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute("TRUNCATE audit_log")
        await owner.execute("SET session_replication_role = replica")  # superuser only
        await owner.execute("UPDATE audit_log SET detail = '{}' WHERE seq = 2")
        assert await audit.verify_chain(owner) == 2
    finally:
        await owner.close()


async def test_a_superuser_or_owner_is_refused_as_service_role(fresh_db: str) -> None:
    await migrate(fresh_db, "verification", ROOT / "services" / "verification" / "migrations")
    conn = await asyncpg.connect(fresh_db)
    try:
        superuser = await conn.fetchval("SELECT current_user")
        with pytest.raises(RuntimeError, match="neither a superuser nor the owner"):
            await grant_service_role(conn, superuser)
        with pytest.raises(RuntimeError, match="does not exist"):
            await grant_service_role(conn, "no_such_role_here")
    finally:
        await conn.close()
