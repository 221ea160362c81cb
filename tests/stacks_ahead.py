"""Stacks started ahead: the next stack of the run starts while the tests before it run.

A stack takes 10-16 s to start, 8 s of it waiting for the broker's group joins (Tansu holds a
first join for half the session timeout, and a static member 3 s more; ``docs/reliability.md``).
The suite starts some fifteen of them. A fixture that builds its stack with ``stack_fixture``
declares it (a ``StackSpec``); once the collection has put the tests in their order, the run
knows which stack comes after which, and when one stack is up the next two start, one after
the other, in a thread while the tests of the first run. Their fixtures then take them ready, or
wait for the rest of their start.

A stack whose tests fault the machine (stop the broker, time recoveries) says ``ahead=False``:
it is neither started ahead nor lets the next one start during its tests. A stack started ahead
and never taken (its tests were deselected or failed to set up) is stopped when the run ends.
``TEST_STACKS_AHEAD=0`` turns starting ahead off, to tell a test's own time from its neighbour's.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.embedded import EmbeddedPostgres
from devstack.stack import Stack

# Two: a module shorter than the next stack's start (many take a few seconds) still leaves the
# one after it time to start. Each stack waiting to be taken idles at ~0.3 of a core.
LOOKAHEAD = 2
OFF_ENV = "TEST_STACKS_AHEAD"  # "0": every stack starts when its first test needs it
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass(frozen=True)
class StackSpec:
    """A stack as ``devstack.stack.Stack`` (or a subclass, ``kind``) takes it, under ``workdir/name``."""

    name: str
    db_prefix: str
    registries: tuple[str, ...] | None = None
    replicas: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    # Files the stack reads (an agreements file, say), written under the run's workdir; returns
    # the settings that name them.
    files: Callable[[Path], dict[str, str]] | None = None
    ahead: bool = True
    kind: type[Stack] = Stack

    def build(self, workdir: Path, pg: EmbeddedPostgres) -> Stack:
        env = dict(self.extra_env) | (self.files(workdir) if self.files else {})
        return self.kind(
            workdir / self.name,
            pg=pg,
            db_prefix=self.db_prefix,
            extra_env=env or None,
            registries=list(self.registries) if self.registries else None,
            replicas=self.replicas,
        )


def start(spec: StackSpec, workdir: Path, pg: EmbeddedPostgres) -> Stack:
    """``spec``'s stack, started; stopped again (its logs kept) when its start fails."""
    s = spec.build(workdir, pg)
    try:
        return s.start()
    except BaseException:
        finish(s, spec.name)
        raise


def finish(s: Stack, name: str) -> None:
    """Stop ``s`` and keep its logs under ``test-artifacts/logs/name``."""
    try:
        s.stop()
    finally:
        target = ARTIFACTS / "logs" / name
        target.mkdir(parents=True, exist_ok=True)
        for log in (s.run_dir / "logs").glob("*.log"):
            (target / log.name).write_bytes(log.read_bytes())


class StacksAhead:
    """The run's stacks in the order their first users run, and those started ahead."""

    def __init__(self) -> None:
        self.by_fixture: dict[Callable[..., Any], StackSpec] = {}
        self.order: list[StackSpec] = []
        self.started: set[str] = set()
        self.pending: dict[str, Future[Stack]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stack-ahead")

    def plan(self, items: list[pytest.Item]) -> None:
        """The specs in the order of their first users among the collected (and sorted) items.

        A fixture is known by its function, not its name: two modules may each name theirs
        ``vstack``, and each test gets its own module's."""
        self.order = []
        for item in items:
            info = getattr(item, "_fixtureinfo", None)
            for defs in info.name2fixturedefs.values() if info else ():
                spec = self.by_fixture.get(defs[-1].func)
                if spec is not None and spec not in self.order:
                    self.order.append(spec)

    @contextmanager
    def running(self, spec: StackSpec, workdir: Path, pg: EmbeddedPostgres) -> Iterator[Stack]:
        """``spec``'s stack for a fixture to yield: the one started ahead, or one started now.
        Once it is up, the next ones start ahead; on the way out it is stopped."""
        with self._lock:
            self.started.add(spec.name)
            ahead = self.pending.pop(spec.name, None)
        s = ahead.result() if ahead is not None else start(spec, workdir, pg)
        try:
            self._start_next(spec, workdir, pg)
            yield s
        finally:
            finish(s, spec.name)

    def _start_next(self, spec: StackSpec, workdir: Path, pg: EmbeddedPostgres) -> None:
        """Queue the next ``LOOKAHEAD`` stacks after ``spec``, up to one that must start alone.
        One thread starts them, so they start one after the other, never two at once."""
        if spec not in self.order or not spec.ahead or os.environ.get(OFF_ENV) == "0":
            return
        at = self.order.index(spec)
        with self._lock:
            for following in self.order[at + 1 : at + 1 + LOOKAHEAD]:
                if not following.ahead:
                    return
                if following.name not in self.started:
                    self.started.add(following.name)
                    self.pending[following.name] = self._pool.submit(start, following, workdir, pg)

    def close(self) -> None:
        """Stop what was started ahead and never taken."""
        with self._lock:
            left, self.pending = list(self.pending.items()), {}
        for name, future in left:
            # A start that failed was cleaned up already; its error belongs to no test.
            with contextlib.suppress(Exception):
                finish(future.result(), name)
        self._pool.shutdown(wait=True)


STACKS = StacksAhead()


def stack_fixture(fixture_name: str, spec: StackSpec, *, scope: str = "module") -> Any:
    """A fixture named ``fixture_name`` yielding ``spec``'s stack, started ahead where it can be."""

    def fixture(workdir: Path, pg: EmbeddedPostgres) -> Iterator[Stack]:
        with STACKS.running(spec, workdir, pg) as s:
            yield s

    STACKS.by_fixture[fixture] = spec
    return pytest.fixture(scope=scope, name=fixture_name)(fixture)  # type: ignore[call-overload]
