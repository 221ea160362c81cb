"""``make bench``: run every benchmark, print one table, write JSON and docs/benchmarks.md.

Each benchmark runs in its own process (``python -m bench.<name>``) and writes
``bench/results/<name>.json``. Targets are reported, not asserted: the exit code is non-zero
only when a benchmark failed to run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

from rich.console import Console

from bench.report import render

BENCHES = [
    "offline_token",
    "verification",
    "pipeline",
    "batches",
    "trust_cost",
    "replay",
    "reconciliation",
    "import_roster",
    "backlog",
]
console = Console()


def main() -> int:
    failed = []
    for name in BENCHES:
        if importlib.util.find_spec(f"bench.{name}") is None:
            console.print(f"[yellow]{name}: no benchmark module")
            continue
        console.rule(name)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False, timeout=1800)
        console.print(f"{name}: exit {proc.returncode} in {time.monotonic() - start:.0f}s")
        if proc.returncode != 0:
            failed.append(name)
    table = render()
    console.print(table)
    if failed:
        console.print(f"[red]benchmarks that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
