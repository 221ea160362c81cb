"""The services' databases: one per service, in the embedded cluster or an external server, each
migrated by its owner and used by a login role of the service's own."""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.db import ensure_login_role, migrate


def service_role_name(database: str) -> str:
    """The login role a service connects as: one per service database, never its owner."""
    return re.sub(r"[^a-z0-9_]", "_", database.lower())[:58] + "_svc"


def external_database(admin_dsn: str, name: str) -> str:
    """Database ``name`` in the server of ``admin_dsn`` (created if missing); returns its URL."""
    asyncio.run(_create_external_database(admin_dsn, name))
    parts = urlsplit(admin_dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def migrate_for_service(dsn: str, database: str, service: str, migrations: Path) -> str:
    """Give the service a login role of its own, migrate its database as the owner and grant the
    role what it needs; returns the DSN that logs in as that role."""
    role = service_role_name(database)
    service_dsn = asyncio.run(_provision_role(dsn, role))
    asyncio.run(migrate(dsn, service, migrations, service_role=role))
    return service_dsn


async def _provision_role(admin_dsn: str, role: str) -> str:
    """Create (or re-key) the service's login role; returns the DSN that logs in as it."""
    password = secrets.token_urlsafe(24)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await ensure_login_role(conn, role)
        await conn.execute(f"ALTER ROLE \"{role}\" PASSWORD '{password}'")
    finally:
        await conn.close()
    parts = urlsplit(admin_dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{role}:{password}@{host}", parts.path, parts.query, parts.fragment))


async def _create_external_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
