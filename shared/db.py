"""PostgreSQL access: the asyncpg pool, a migration runner for plain SQL files, driver errors as ours."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import orjson
from asyncpg.transaction import Transaction

log = logging.getLogger(__name__)

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_MIGRATION_LOCK = 0x6D6967  # advisory lock id: one migrator at a time per database


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached; the caller may retry."""


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that mean "the database is not reachable now", as opposed to a bad query."""
    return isinstance(
        exc,
        DatabaseUnavailable
        | OSError
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | asyncpg.AdminShutdownError
        | asyncpg.ConnectionDoesNotExistError
        # A connection left mid-operation when the server went away ("another operation is in progress").
        | asyncpg.InternalClientError,
    )


# Faults of the moment between transactions, not of the request or the message: PostgreSQL
# rolled the transaction back (deadlock, serialization failure) or a lock or statement timeout
# ended it. The same work may well pass a second later.
CONTENTION = (asyncpg.TransactionRollbackError, asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)


def is_contention(exc: BaseException) -> bool:
    """True when the transaction lost to another one or to a timeout, and nothing of it stayed."""
    return isinstance(exc, CONTENTION)


def is_transient(exc: BaseException) -> bool:
    """A failure of the database rather than of the message (unreachable, a statement timed out
    or was cancelled, a lock wait, a deadlock or serialization failure): never a reason to
    dead-letter."""
    return is_unavailable(exc) or is_contention(exc) or isinstance(exc, TimeoutError)


async def init_connection(conn: asyncpg.Connection) -> None:
    """json and jsonb read and written with orjson: every connection of a service, and tools that
    must read rows exactly as the services do (audit hashes depend on it)."""
    # Binary wire format (jsonb's is a version byte, 1, then the text): no str round trip, and
    # binary COPY (copy_records_to_table) can carry json columns.
    await conn.set_type_codec(
        "json", encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=_jsonb_encode,
        decoder=_jsonb_decode,
        schema="pg_catalog",
        format="binary",
    )


def _jsonb_encode(value: object) -> bytes:
    return b"\x01" + orjson.dumps(value)


def _jsonb_decode(data: bytes) -> object:
    return orjson.loads(data[1:])


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Pooled connections carry no session state here (no LISTEN, session locks or SET), so the
    default reset round trip (RESET ALL; UNLISTEN *; ...) on every release is skipped. The
    relay and the client listener hold connections of their own outside the pool."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections encode json/jsonb with orjson."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=init_connection,
            command_timeout=30,
            reset=_reset_connection,
        )
    except (OSError, asyncpg.PostgresError) as e:
        raise DatabaseUnavailable(f"cannot connect to the database: {type(e).__name__}") from e
    assert pool is not None
    return pool


RELAY_CHANNEL = "outbox"  # NOTIFY channel the outbox relay listens on (shared.outbox_relay)


async def wake_relay(conn: asyncpg.Connection) -> None:
    """Tell the relay that rows were committed. Call it after the commit, outside any transaction.

    A NOTIFY inside the writing transaction would take PostgreSQL's global notify lock through
    that transaction's commit and its WAL flush, serialising every writer behind one fsync at a
    time (about 100 commits/s on an ordinary disk). Sent afterwards, it costs one round trip and
    writers keep committing in parallel; if the process dies in between, the relay's poll finds
    the rows anyway.
    """
    await conn.execute(f"NOTIFY {RELAY_CHANNEL}")


@asynccontextmanager
async def unit_of_work_on(
    conn: asyncpg.Connection, *, wake: bool = True
) -> AsyncIterator[asyncpg.Connection]:
    """One unit of work on a connection the caller holds (a consumer's, a sweep's): begin; commit on
    normal exit and then wake the relay (``wake``); roll back if the body raises (any exception,
    a private one included: that is how a caller drops work it decided not to keep). A connection
    the database dropped, or one that cannot even roll back, is terminated, so a pool never hands
    it out again."""
    tx = conn.transaction()
    try:
        await tx.start()
        try:
            yield conn
        except BaseException:
            await _roll_back(conn, tx)
            raise
        await tx.commit()
        if wake:
            await wake_relay(conn)
    except Exception as e:
        if is_unavailable(e):
            conn.terminate()
        raise


async def _roll_back(conn: asyncpg.Connection, tx: Transaction) -> None:
    try:
        await tx.rollback()
    except BaseException:
        conn.terminate()  # its state is unknown: it must not go back to the pool
        raise


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool, *, wake: bool = True) -> AsyncIterator[asyncpg.Connection]:
    """The one way to write: acquire a connection, begin, commit on normal exit (then wake the
    outbox relay, so events written in it go out at once), roll back if the body raises, and
    never return a broken connection to the pool."""
    async with pool.acquire() as conn, unit_of_work_on(conn, wake=wake) as tx:
        yield tx


def _migration_files(folder: Path) -> list[tuple[int, str, str]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file {path.name} must be named NNNN_lower_snake.sql")
        found.append((int(m.group(1)), path.name, path.read_text(encoding="utf-8")))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {folder}")
    return found


async def migrate(dsn: str, service: str, folder: Path, *, service_role: str | None = None) -> list[str]:
    """Apply the shared migrations, then the service's own, each once, each in its own transaction.

    Re-running is safe: applied versions are recorded with a checksum, and a changed file
    that was already applied is refused rather than silently skipped. With ``service_role``,
    that (existing, non-owner) role is then granted what the service needs and no more.
    """
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   namespace text NOT NULL, version int NOT NULL, name text NOT NULL,
                   checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (namespace, version))"""
        )
        for namespace, path in (("shared", SHARED_MIGRATIONS), (service, folder)):
            done = {
                r["version"]: r["checksum"]
                for r in await conn.fetch(
                    "SELECT version, checksum FROM schema_migrations WHERE namespace = $1", namespace
                )
            }
            for version, name, sql in _migration_files(path):
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if version in done:
                    if done[version] != checksum:
                        raise RuntimeError(f"migration {namespace}/{name} changed after it was applied")
                    continue
                async with unit_of_work_on(conn, wake=False):
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (namespace, version, name, checksum) VALUES ($1,$2,$3,$4)",
                        namespace,
                        version,
                        name,
                        checksum,
                    )
                applied.append(f"{namespace}/{name}")
                log.info("migration applied", extra={"migration": f"{namespace}/{name}"})
        if service_role:
            await grant_service_role(conn, service_role)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied


_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _role_ident(role: str) -> str:
    if not _ROLE_NAME.match(role):
        raise ValueError(f"database role {role!r} must match {_ROLE_NAME.pattern}")
    return f'"{role}"'


async def grant_service_role(conn: asyncpg.Connection, role: str) -> None:
    """What a service's own database role may do: read and write its tables, append to the audit log.

    The role must not own the tables (an owner can drop triggers and grant itself anything)
    nor be a superuser. It gets no UPDATE, DELETE or TRUNCATE on ``audit_log`` (and a trigger
    refuses them anyway), no TRUNCATE on ``clients`` (a trigger keeps a revoked client's row, so
    its revocation stays final), and cannot rewrite the migration history.
    """
    ident = _role_ident(role)
    facts = await conn.fetchrow(
        """SELECT r.rolsuper, EXISTS (SELECT 1 FROM pg_tables t WHERE t.schemaname = 'public'
                                        AND t.tableowner = r.rolname) AS owns
           FROM pg_roles r WHERE r.rolname = $1""",
        role,
    )
    if facts is None:
        raise RuntimeError(f"database role {role} does not exist; create it (LOGIN, no superuser) first")
    if facts["rolsuper"] or facts["owns"]:
        raise RuntimeError(f"database role {role} must be neither a superuser nor the owner of the tables")
    database = await conn.fetchval("SELECT current_database()")
    async with unit_of_work_on(conn, wake=False):
        await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {ident}')
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {ident}")
        await conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO {ident}"
        )
        await conn.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {ident}")
        await conn.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {ident}")
        await conn.execute(f"REVOKE TRUNCATE ON clients FROM {ident}")  # a revoked row stays (0008)
        await conn.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM {ident}")


async def ensure_login_role(admin: asyncpg.Connection, role: str) -> None:
    """Create a plain login role (no superuser, no CREATEDB/CREATEROLE) if it does not exist yet."""
    ident = _role_ident(role)
    if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        with contextlib.suppress(asyncpg.DuplicateObjectError):  # another migrator made it meanwhile
            await admin.execute(f"CREATE ROLE {ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
