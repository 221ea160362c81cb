"""The embedded PostgreSQL of ``make run``, the benchmarks and the tests: stopping stops it."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

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
