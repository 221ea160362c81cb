"""One tree's pipeline CPU per event and verification rate (run by ``bench.trust_cost``).

``python trust_probe.py RUN_DIR OUT.json EVENTS RATE`` with ``PYTHONPATH`` at the tree to measure:
only APIs both trees have are used (``devstack.stack.Stack``, ``bench.pipeline``, ``bench.common``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.common import KeepAliveHttp, RssSampler
from bench.pipeline import _arrival, _drive, _wait_applied
from devstack.embedded import EmbeddedPostgres
from devstack.stack import DESTINATION, Stack


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        for p in (proc, *proc.children(recursive=True)):
            times = p.cpu_times()
            total += times.user + times.system
    return total


async def _verifications(url: str, token: str, seconds: float, concurrency: int = 32) -> tuple[float, int]:
    body = orjson.dumps(
        {
            "certificate_number": "320412-2026-NOSUCH00",
            "holder_id_number": "11010519491231002X",
            "purpose": "benefits",
        }
    )
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        client = KeepAliveHttp(url, {"Authorization": f"Bearer {token}"})
        while time.perf_counter() < stop:
            if await client.post("/v1/verifications", body) == 200:
                done += 1
        await client.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start), done


def main(run_dir: Path, out: Path, events: int, rate: float) -> None:
    pg = EmbeddedPostgres(run_dir / "pgdata", cleanup="delete")
    env = {"LOG_LEVEL": "WARNING", "RATE_LIMIT_PER_MINUTE": "100000000", "RATE_LIMIT_BURST": "10000000"}
    stack = Stack(run_dir / "stack", pg=pg, db_prefix="trustbench_", extra_env=env)
    try:
        stack.start()
        pids = {s.name: s.process.pid for s in stack.services if s.process}
        procs = [psutil.Process(pid) for pid in pids.values()]
        sampler = RssSampler(pids)
        dest = stack.service(f"registry-{DESTINATION}").url
        token = stack.token(f"reg-{DESTINATION}")
        # a warm-up, then the measured run
        for n in (200, events):
            bodies = [_arrival(dt.date(1980, 1, 1)) for _ in range(n)]
            since = dt.datetime.now(dt.UTC)
            cpu = _cpu_seconds(procs)
            _, errors = asyncio.run(_drive(dest, token, bodies, rate))
            _, latencies = asyncio.run(
                _wait_applied(stack.service("migrant_exchange").dsn, since, {"n": n - errors}, sampler)
            )
            used = _cpu_seconds(procs) - cpu
        assert len(latencies) == events - errors, (len(latencies), events, errors)
        verification = stack.service("verification").url
        kiosk = stack.token(f"kiosk-{DESTINATION}")
        asyncio.run(_verifications(verification, kiosk, 2.0))  # warm-up
        # CPU of the verification process per answer as well: on a shared machine the rate
        # follows whatever else runs, the CPU an answer costs much less so.
        service = psutil.Process(stack.service("verification").process.pid)  # type: ignore[union-attr]
        cpu = _cpu_seconds([service])
        per_second, answered = asyncio.run(_verifications(verification, kiosk, 8.0))
        per_cpu_second = answered / max(_cpu_seconds([service]) - cpu, 1e-9)
        result: dict[str, Any] = {
            "events_applied": len(latencies),
            "cpu_seconds": used,
            "cpu_ms_per_event": used / len(latencies) * 1000,
            "verifications_per_s": per_second,
            "verifications_per_cpu_s": per_cpu_second,
        }
        out.write_text(json.dumps(result))
        print(json.dumps(result), flush=True)
    finally:
        stack.stop()
        pg.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
