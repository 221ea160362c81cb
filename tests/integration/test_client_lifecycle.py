"""The clients file is authoritative (real PostgreSQL, the services' own ClientRegistry).

Removed means revoked, revoked stays revoked across restarts, credentials expire, and a
rotation keeps the old secret working only for its overlap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.auth import ClientRegistry, new_credential
from shared.clients_file import ClientsFileError, ClientSources, sync_clients, write_file
from shared.db import create_pool, migrate
from shared.errors import Unauthorized
from tests.helpers import kiosk_entry

ROOT = Path(__file__).resolve().parents[2]


_entry = kiosk_entry


@pytest.fixture
async def pool(fresh_db: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(fresh_db, "verification", ROOT / "services" / "verification" / "migrations")
    p = await create_pool(fresh_db, min_size=1, max_size=4)
    yield p
    await p.close()


async def _registry(pool: asyncpg.Pool, dsn: str, path: Path) -> ClientRegistry:
    registry = ClientRegistry(pool, dsn, ClientSources(str(path)))
    await registry.start()
    return registry


def _admits(registry: ClientRegistry, token: str) -> bool:
    try:
        registry.authenticate(f"Bearer {token}")
        return True
    except Unauthorized:
        return False


async def _eventually(check: Any, timeout: float = 6.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the change never took effect"
        await asyncio.sleep(0.05)


async def test_a_client_removed_from_the_file_is_revoked(
    pool: asyncpg.Pool, fresh_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "clients.yaml"
    a, _ = new_credential("kiosk-a")
    b, _ = new_credential("kiosk-b")
    write_file(path, [_entry("kiosk-a", a), _entry("kiosk-b", b)])
    registry = await _registry(pool, fresh_db, path)
    try:
        assert _admits(registry, a) and _admits(registry, b)
        write_file(path, [_entry("kiosk-a", a)])
        await _eventually(lambda: not _admits(registry, b))  # the watcher applied the file
        assert _admits(registry, a)
        row = await pool.fetchrow("SELECT revoked_at FROM clients WHERE client_id = 'kiosk-b'")
        assert row["revoked_at"] is not None
    finally:
        await registry.stop()


async def test_a_revocation_survives_restarts_and_an_old_file(
    pool: asyncpg.Pool, fresh_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "clients.yaml"
    token, _ = new_credential("kiosk-r")
    write_file(path, [_entry("kiosk-r", token)])
    registry = await _registry(pool, fresh_db, path)
    assert _admits(registry, token)
    write_file(path, [_entry("kiosk-r", token, revoked=True)])
    await _eventually(lambda: not _admits(registry, token))
    await registry.stop()
    revoked_at = await pool.fetchval("SELECT revoked_at FROM clients WHERE client_id = 'kiosk-r'")

    # the next start reads a file restored from before the revocation: still revoked
    write_file(path, [_entry("kiosk-r", token)])
    registry = await _registry(pool, fresh_db, path)
    try:
        assert not _admits(registry, token)
        assert await pool.fetchval("SELECT revoked_at FROM clients WHERE client_id = 'kiosk-r'") == revoked_at
        with pytest.raises(asyncpg.CheckViolationError, match="revocation is final"):
            await pool.execute("UPDATE clients SET revoked_at = NULL WHERE client_id = 'kiosk-r'")
        await registry.reload()
        assert not _admits(registry, token)
    finally:
        await registry.stop()


async def test_rotation_keeps_the_old_secret_for_the_overlap_only(
    pool: asyncpg.Pool, fresh_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "clients.yaml"
    old, _ = new_credential("kiosk-o")
    write_file(path, [_entry("kiosk-o", old)])
    registry = await _registry(pool, fresh_db, path)
    try:
        new, _ = new_credential("kiosk-o")
        overlap_end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        rotated = _entry("kiosk-o", new).model_copy(
            update={
                "previous_secret_hash": _entry("kiosk-o", old).secret_hash,
                "previous_expires_at": overlap_end,
            }
        )
        write_file(path, [rotated])
        await _eventually(lambda: _admits(registry, new))
        assert _admits(registry, old)  # inside the overlap both work
        await _eventually(lambda: not _admits(registry, old), timeout=4)
        assert dt.datetime.now(dt.UTC) >= overlap_end
        assert _admits(registry, new)
        assert not _admits(registry, "kiosk-o.not-the-secret")
    finally:
        await registry.stop()


async def test_an_expired_credential_is_refused(pool: asyncpg.Pool, fresh_db: str, tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    live, _ = new_credential("kiosk-l")
    gone, _ = new_credential("kiosk-g")
    now = dt.datetime.now(dt.UTC)
    write_file(
        path,
        [
            _entry("kiosk-l", live, expires_at=now + dt.timedelta(days=1)),
            _entry("kiosk-g", gone, expires_at=now - dt.timedelta(seconds=1)),
        ],
    )
    registry = await _registry(pool, fresh_db, path)
    try:
        assert _admits(registry, live) and not _admits(registry, gone)
    finally:
        await registry.stop()


async def test_a_broken_file_stops_the_start_and_is_not_applied_later(
    pool: asyncpg.Pool, fresh_db: str, tmp_path: Path
) -> None:
    path = tmp_path / "clients.yaml"
    token, secret_hash = new_credential("ops-1")
    path.write_text(
        f"- {{client_id: ops-1, kind: operator, scopes: [pregnancy:read], secret_hash: {secret_hash}}}\n"
    )
    with pytest.raises(
        ClientsFileError, match="client ops-1: scopes: a client of kind operator may not hold"
    ):
        await ClientRegistry(pool, fresh_db, ClientSources(str(path))).start()

    write_file(path, [_entry("kiosk-k", token.replace("ops-1", "kiosk-k"))])
    registry = await _registry(pool, fresh_db, path)
    try:
        kiosk = token.replace("ops-1", "kiosk-k")
        assert _admits(registry, kiosk)
        path.write_text("- {client_id: kiosk-k, kind: kiosk}\n")  # broken: would revoke nobody, admit nobody
        await asyncio.sleep(2.5)  # the watcher saw it and refused it
        await registry.reload()
        assert _admits(registry, kiosk)
    finally:
        await registry.stop()


async def test_a_sync_that_waited_for_another_writer_applies_the_file_as_it_is_then(
    pool: asyncpg.Pool, fresh_db: str, tmp_path: Path
) -> None:
    """Two writers of the clients table: a service applying the file it watches, and an operator
    who adds a client to the file and applies it at once. A service that read the file before
    the operator's change and applied it after would revoke the new client, for good (revocations
    are final). The file is read under the lock every writer takes, so the service applies what
    the operator wrote."""
    path = tmp_path / "clients.yaml"
    a, _ = new_credential("kiosk-a")
    b, _ = new_credential("kiosk-b")
    write_file(path, [_entry("kiosk-a", a)])
    service = ClientSources(str(path))
    async with pool.acquire() as conn, conn.transaction():
        await service.sync(conn)

    operator = await asyncpg.connect(fresh_db)
    try:
        change = operator.transaction()
        await change.start()
        await operator.execute("SELECT pg_advisory_xact_lock(hashtext('clients-file'))")  # as sync_clients

        async def service_sync() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await service.sync(conn)

        waiting = asyncio.create_task(service_sync())
        await asyncio.sleep(0.5)  # the service's sync has begun, and waits for the lock
        assert not waiting.done()
        newer = [_entry("kiosk-a", a), _entry("kiosk-b", b)]
        write_file(path, newer)
        await sync_clients(operator, newer)
        await change.commit()
        await asyncio.wait_for(waiting, 10)
    finally:
        await operator.close()
    revoked = await pool.fetchval("SELECT revoked_at FROM clients WHERE client_id = 'kiosk-b'")
    assert revoked is None, "the operator's new client was revoked by a file read before it was added"
    registry = await _registry(pool, fresh_db, path)
    try:
        assert _admits(registry, b) and _admits(registry, a)
    finally:
        await registry.stop()


async def test_a_replica_whose_copy_of_the_file_is_behind_leaves_the_newer_edit_applied(
    pool: asyncpg.Pool, fresh_db: str, tmp_path: Path
) -> None:
    """Two replicas of a service, each with its own mount of the clients Secret, which Kubernetes
    updates pod by pod. Edit 2 adds kiosk-b; edit 3 takes kiosk-c out and adds kiosk-d. The first
    replica's mount shows edit 3 and applies it, then the second replica's mount catches up only
    to edit 2, which does not list kiosk-d: applying it would revoke kiosk-d for good. It is
    left, and the second replica applies edit 3 once its mount shows it."""
    a, _ = new_credential("kiosk-a")
    b, _ = new_credential("kiosk-b")
    c, _ = new_credential("kiosk-c")
    d, _ = new_credential("kiosk-d")
    first, second = tmp_path / "pod-1" / "clients.yaml", tmp_path / "pod-2" / "clients.yaml"
    first.parent.mkdir()
    second.parent.mkdir()
    edit_1 = [_entry("kiosk-a", a), _entry("kiosk-c", c)]
    edit_2 = [*edit_1, _entry("kiosk-b", b)]
    edit_3 = [_entry("kiosk-a", a), _entry("kiosk-b", b), _entry("kiosk-d", d)]  # c taken out, d added
    for mount in (first, second):
        write_file(mount, edit_1, revision=1)
    replica_1, replica_2 = ClientSources(str(first)), ClientSources(str(second))

    async def sync(replica: ClientSources) -> Any:
        async with pool.acquire() as conn, conn.transaction():
            return await replica.sync(conn)

    assert (await sync(replica_1)).applied and (await sync(replica_2)).applied
    write_file(first, edit_3, revision=3)
    applied = await sync(replica_1)
    assert applied.applied and applied.applied_before == 1
    write_file(second, edit_2, revision=2)  # the second pod's mount, one edit behind
    left = await sync(replica_2)

    states = {
        r["client_id"]: r["revoked_at"] is None
        for r in await pool.fetch("SELECT client_id, revoked_at FROM clients")
    }
    assert states == {"kiosk-a": True, "kiosk-b": True, "kiosk-c": False, "kiosk-d": True}, states
    assert not left.applied and left.applied_before == 3
    write_file(second, edit_3, revision=3)  # its mount catches up: the same list, applied again
    assert (await sync(replica_2)).applied
    registry = await _registry(pool, fresh_db, second)
    try:
        assert _admits(registry, d) and _admits(registry, b) and not _admits(registry, c)
    finally:
        await registry.stop()


async def test_a_file_of_a_later_revision_is_applied_and_a_bare_list_as_before(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The revision only orders files that carry one: a later revision applies (and takes out what
    it no longer lists); a bare list, as files were before revisions, applies as it is."""
    a, _ = new_credential("kiosk-a")
    b, _ = new_credential("kiosk-b")
    path = tmp_path / "clients.yaml"
    source = ClientSources(str(path))

    async def sync() -> Any:
        async with pool.acquire() as conn, conn.transaction():
            return await source.sync(conn)

    write_file(path, [_entry("kiosk-a", a), _entry("kiosk-b", b)], revision=4)
    assert (await sync()).applied
    write_file(path, [_entry("kiosk-a", a)], revision=5)
    assert (await sync()).applied
    assert await pool.fetchval("SELECT revoked_at FROM clients WHERE client_id = 'kiosk-b'") is not None
    assert await pool.fetchval("SELECT revision FROM clients_file_applied") == 5
    write_file(path, [])  # a bare list: applied, the recorded revision stays
    synced = await sync()
    assert synced.applied and synced.revision is None
    assert await pool.fetchval("SELECT revoked_at FROM clients WHERE client_id = 'kiosk-a'") is not None
    assert await pool.fetchval("SELECT revision FROM clients_file_applied") == 5


class _HeldRead(ClientRegistry):
    """A registry whose next read of the table, once ``hold`` is set, returns its rows only
    after a while (a slow connection, a busy event loop): later reads may overtake it."""

    hold = False

    async def _rows(self) -> list[asyncpg.Record]:
        held, self.hold = self.hold, False
        rows = await super()._rows()
        if held:
            await asyncio.sleep(0.5)
        return rows


async def test_a_read_of_the_clients_before_a_revocation_never_lands_after_it(
    pool: asyncpg.Pool, fresh_db: str, tmp_path: Path
) -> None:
    """A read of the table starts (another change was notified) and is slow to come back; the
    client is revoked meanwhile, and its notification's read comes back first. The older read
    must not then put the revoked client back: it would be admitted until the next change, which
    may never come."""
    path = tmp_path / "clients.yaml"
    token, _ = new_credential("kiosk-r")
    write_file(path, [_entry("kiosk-r", token)])
    registry = _HeldRead(pool, fresh_db, ClientSources(str(path)))
    await registry.start()
    try:
        assert _admits(registry, token)
        registry.hold = True
        before = asyncio.create_task(registry.reload())
        await asyncio.sleep(0.1)  # it has read the table: the client not revoked yet
        await pool.execute("UPDATE clients SET revoked_at = now() WHERE client_id = 'kiosk-r'")
        await _eventually(lambda: not _admits(registry, token))
        await before
        await asyncio.sleep(0.2)
        assert not _admits(registry, token), "the older read put the revoked client back"
    finally:
        await registry.stop()
