"""Before and after on one machine: the batched flow run alternately on two revisions.

``python -m bench.ab BASE [HEAD] [--rounds 2] [--events 20000] [--single]``

The machines this is measured on drift by 15-30 % within minutes (``docs/scale.md``), so a
change's own share shows only in runs that alternate with the code before it. Each revision gets
a git worktree of its own, so each runs with its own migrations (a checkout of old code over the
tree leaves newer migration files behind); HEAD defaults to the working tree as it is,
uncommitted changes included. Each round runs base, head, head, base. Every run starts a stack of
its own, warms it (one-per-request arrivals, then a small batched run), and sends ``--events``
arrivals in batches of 500 (``--single``: one per request, 32 connections as ``bench.pipeline``
sends them): events/s end to end and CPU milliseconds per event of each process (services,
broker, PostgreSQL with its backends), then the median of each side.

Revisions from 2026-12-02 on carry what a run imports (``bench.batches``, ``bench.backlog``'s
CPU reading). Not part of ``make bench``: a tool for whoever changes the pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARK = "AB-RESULT "
WARM_SINGLE, WARM_BATCHED = 2000, 2000


def one(events: int, single: bool = False) -> dict[str, Any]:
    """One run in the tree this process imports from: the rate and each process's CPU per event.

    The stack is set up here as ``bench.batches`` does, not by a helper shared with it: this file
    also runs against older revisions, so it uses only what they have too."""
    from bench.backlog import _cpu, processes
    from bench.batches import batch_run
    from bench.common import RssSampler, workdir
    from bench.pipeline import pipeline_run
    from devstack.embedded import EmbeddedPostgres
    from devstack.stack import Stack

    root = workdir("mx-bench-ab-")
    pg = EmbeddedPostgres(root / "pgdata", cleanup="delete")
    stack = Stack(root / "stack", pg=pg, db_prefix="benchab_", extra_env={"LOG_LEVEL": "WARNING"})
    try:
        stack.start()
        sampler = RssSampler({s.name: s.process.pid for s in stack.services if s.process})
        asyncio.run(pipeline_run(stack, WARM_SINGLE, None, sampler))
        asyncio.run(batch_run(stack, WARM_BATCHED, sampler))
        procs = processes(stack, pg)
        before = {name: _cpu(proc) for name, proc in procs.items()}
        started = time.perf_counter()
        if single:
            asyncio.run(pipeline_run(stack, events, None, sampler))
        else:
            asyncio.run(batch_run(stack, events, sampler))
        took = time.perf_counter() - started
        cpu = {name: (_cpu(proc) - before[name]) * 1000 / events for name, proc in procs.items()}
        return {"events_per_second": events / took, "cpu_ms_per_event": cpu, "all": sum(cpu.values())}
    finally:
        stack.stop()
        pg.stop()


def _tree(rev: str | None, into: Path) -> Path:
    """The working tree itself (``None``), or a detached worktree of ``rev``."""
    if rev is None:
        return ROOT
    path = into / rev.replace("/", "_")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True)
    return path


def _run(tree: Path, events: int, single: bool) -> dict[str, Any]:
    """``one`` in a process that imports ``tree``'s code (its services are started from there too)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--one", "--events", str(events)]
        + (["--single"] if single else []),
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith(MARK))
    result: dict[str, Any] = json.loads(line[len(MARK) :])
    return result


def _row(label: str, r: dict[str, Any], names: list[str]) -> str:
    cells = [f"{r['events_per_second']:,.0f}", f"{r['all']:.3f}"] + [
        f"{r['cpu_ms_per_event'].get(n, 0.0):.3f}" for n in names
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


def report(base: str, head: str, runs: list[tuple[str, dict[str, Any]]]) -> str:
    """A markdown table of every run in order, then each side's median."""
    names = sorted({n for _, r in runs for n in r["cpu_ms_per_event"]})
    lines = [
        "| run | events/s | CPU ms/event, all | " + " | ".join(names) + " |",
        "|---" * (3 + len(names)) + "|",
    ]
    lines += [_row(label, r, names) for label, r in runs]
    for side in (base, head):
        mine = [r for label, r in runs if label == side]
        median = {
            "events_per_second": statistics.median(r["events_per_second"] for r in mine),
            "all": statistics.median(r["all"] for r in mine),
            "cpu_ms_per_event": {
                n: statistics.median(r["cpu_ms_per_event"].get(n, 0.0) for r in mine) for n in names
            },
        }
        lines.append(_row(f"median, {side}", median, names))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", nargs="?", help="the revision before (a commit, branch or tag)")
    parser.add_argument("head", nargs="?", help="the revision after (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of base, head, head, base")
    parser.add_argument("--events", type=int, default=20_000, help="arrivals per run, in batches of 500")
    parser.add_argument("--single", action="store_true", help="one event per request instead of batches")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        # import the tree this process was started in (PYTHONPATH), not this file's neighbours
        here = str(Path(__file__).resolve().parent)
        sys.path[:] = [p for p in sys.path if p != here]
        print(MARK + json.dumps(one(args.events, args.single)), flush=True)
        return 0
    if args.base is None:
        parser.error("name the revision to compare against")
    head_label = args.head or "working tree"
    with tempfile.TemporaryDirectory(prefix="mx-ab-") as d:
        trees = {args.base: _tree(args.base, Path(d)), head_label: _tree(args.head, Path(d))}
        try:
            runs: list[tuple[str, dict[str, Any]]] = []
            for _ in range(args.rounds):
                for label in (args.base, head_label, head_label, args.base):
                    runs.append((label, _run(trees[label], args.events, args.single)))
                    print(_row(label, runs[-1][1], sorted(runs[-1][1]["cpu_ms_per_event"])), flush=True)
            print(report(args.base, head_label, runs))
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(
                        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
