"""Session fixtures: one embedded PostgreSQL cluster for the run; brokers and stacks as tests need them.

Nothing is mocked: tests talk to real PostgreSQL, the real Tansu broker over the Kafka
protocol, and the services over real HTTP.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.embedded import Broker, EmbeddedPostgres
from tests.contracts_kit import RECORD_DIR_ENV, check_recorded
from tests.stacks_ahead import STACKS, StackSpec, stack_fixture

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
_db_counter = itertools.count(1)
# Every event a relay of this run publishes (in-process or a stack's processes) is recorded here
# and checked against the published contracts when the run ends (pytest_sessionfinish).
RECORDED_EVENTS = Path(
    os.environ.setdefault(RECORD_DIR_ENV, str(ARTIFACTS / "events" / f"run-{time.time_ns()}-{os.getpid()}"))
)


# The order directories run in: those that start no stack first, then each stack's users together.
# A stack is stopped once the directory that uses it is done (its fixture is package-scoped), and
# the session stack is started for the last three. An idle stack is not free: its consumers poll
# the broker ten times a second each, some 30 % of one of CI's two cores per stack left running.
_RUN_ORDER = ("chart", "unit", "integration", "exchange", "reliability", "e2e", "fuzz", "security")
# Scans every log, database and metric the run left, so it runs after everything else.
_LAST = "security/test_security_leaks.py"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent

    def place(item: pytest.Item) -> tuple[int, bool]:
        relative = item.path.resolve().relative_to(tests)
        top = relative.parts[0] if len(relative.parts) > 1 else ""
        rank = _RUN_ORDER.index(top) if top in _RUN_ORDER else len(_RUN_ORDER)
        return rank, relative.as_posix() == _LAST

    items.sort(key=place)  # stable: within a directory the collected order stays
    STACKS.plan(items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every recorded event of the run keeps its contract, or the run fails naming the broken ones."""
    if not RECORDED_EVENTS.is_dir():
        return
    types, broken = check_recorded(RECORDED_EVENTS)
    report = ARTIFACTS / "events" / "contract-check.txt"
    lines = [f"{sum(types.values())} recorded events, {len(broken)} breaking their contract"]
    lines += [f"  {n:6d} {t}" for t, n in sorted(types.items())] + broken
    report.write_text("\n".join(lines) + "\n")
    if broken:
        print("\n".join(["", *lines[:1], *broken[:20], f"(all in {report})"]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    """Tests that build an app in-process point the root logger at the stderr pytest captured,
    closed by now; the embedded PostgreSQL wheel logs its exit later still (atexit), which came out
    as "--- Logging error ---" after every run. Without handlers its last line goes to Python's
    last-resort handler: warnings and errors still reach the real stderr, information does not."""
    logging.getLogger().handlers.clear()


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mx-test-") as d:
        os.chmod(d, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as its own system user
        yield Path(d)


@pytest.fixture(scope="session")
def pg(workdir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(workdir / "pgdata", cleanup="delete")
    yield server
    STACKS.close()  # a stack started ahead and never taken
    server.discard()


@pytest.fixture
def fresh_db(pg: EmbeddedPostgres) -> str:
    """A new, empty database for one test."""
    return pg.create_database(f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def broker(workdir: Path) -> Iterator[Broker]:
    """A broker of the test's own: fault tests stop and restart it without disturbing others."""
    b = Broker(log_path=workdir / "broker-fn.log").start()
    yield b
    b.stop()


# The whole system as processes: two registries (320412, 440703), exchange, verification.
stack = stack_fixture("stack", StackSpec("stack", db_prefix="main_"), scope="session")
