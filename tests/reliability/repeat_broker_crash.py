"""The broker-crash test, repeated on one stack: ``python -m tests.reliability.repeat_broker_crash``.

Each run SIGKILLs the broker in the middle of a 2,000-person stream, starts it again 5 s later and
waits until every notification is applied and answered (``crash_broker_mid_stream``). The stack
is kept between runs, so every run after the first meets a stack that has served traffic before;
``--busy N`` keeps N processes spinning on the CPU meanwhile (both cores of the reference machine
busy with ``--busy 2``), in every run or, with ``--busy-runs K``, in the last K runs only. Prints
one line per run and a summary; exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path

from devstack.stack import Stack
from tests.reliability.fault_tools import migrants
from tests.reliability.test_reliability_broker_crash import crash_broker_mid_stream


def _spin(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        sum(i * i for i in range(10_000))


async def _runs(stack: Stack, runs: int, busy: int, busy_runs: int) -> list[tuple[bool, str]]:
    results = []
    for i in range(runs):
        spinning = busy if i >= runs - busy_runs else 0
        burners = [
            multiprocessing.Process(target=_spin, args=(time.monotonic() + 120,), daemon=True)
            for _ in range(spinning)
        ]
        for b in burners:
            b.start()
        started = time.monotonic()
        try:
            counts = await crash_broker_mid_stream(stack, migrants(2000))
            ok = counts.lost == 0 and counts.roster_moves == 2000 and counts.destination_repeated == 0
            busy_note = f", {spinning} CPU spinners" if spinning else ""
            results.append(
                (ok, f"run {i + 1}{busy_note}: {counts} ({time.monotonic() - started:.0f} s in all)")
            )
        except AssertionError as e:
            results.append((False, f"run {i + 1}: FAILED {e}"))
        except Exception as e:  # a run that broke (not only failed its checks) counts as failed
            results.append((False, f"run {i + 1}: BROKE {type(e).__name__}: {e}"))
        finally:
            for b in burners:
                b.terminate()
        print(results[-1][1], flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--busy", type=int, default=0, help="CPU-spinning processes during a run")
    parser.add_argument(
        "--busy-runs", type=int, default=None, help="spin in the last K runs only (default: all)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mx-crash-") as d:
        Path(d).chmod(0o755)  # the embedded PostgreSQL runs as its own system user
        stack = Stack(Path(d) / "stack", pg_cleanup="delete")
        stack.start()
        try:
            busy_runs = args.runs if args.busy_runs is None else args.busy_runs
            results = asyncio.run(_runs(stack, args.runs, args.busy, busy_runs))
        finally:
            stack.stop()
    failed = sum(not ok for ok, _ in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
