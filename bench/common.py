"""What every benchmark needs: the embedded stack, percentiles, result files."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psutil

from devstack.stack import DESTINATION, ORIGIN
from shared.events import payloads as p

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def workdir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as its own system user
    return d


class RssSampler:
    """Peak resident memory of a set of processes (and their children), sampled while work runs."""

    def __init__(self, pids: dict[str, int]):
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak: dict[str, float] = dict.fromkeys(pids, 0.0)

    def sample(self) -> None:
        for name, proc in self.procs.items():
            try:
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                continue
            self.peak[name] = max(self.peak[name], rss / 2**20)


M = TypeVar("M", bound=p._MigrationV1)


def migration(
    kind: type[M],
    id_number: str,
    migration_date: dt.date,
    *,
    name: str = "测试",
    from_division: str = ORIGIN,
    to_division: str = DESTINATION,
) -> M:
    """A migration payload (departed, returned, ...) of a person whose hukou is at the stack's
    origin; by default from the origin to the destination."""
    return kind(
        migration_id=uuid.uuid4(),
        id_number=id_number,
        name=name,
        hukou_division=ORIGIN,
        from_division=from_division,
        to_division=to_division,
        migration_date=migration_date,
    )


def departure(id_number: str, migration_date: dt.date) -> p.MigrationDepartedV1:
    """A departure from the stack's origin jurisdiction to its destination: the event the
    roster and backlog benchmarks and the fault tests route through the exchange."""
    return migration(p.MigrationDepartedV1, id_number, migration_date)


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


class KeepAliveHttp:
    """A minimal HTTP/1.1 keep-alive client for load generation: a request is prebuilt bytes and a
    response is read by its Content-Length. httpx costs about 1 ms of CPU a request, so a load
    generator built on it takes a third of a 2-core machine away from the system it measures;
    this costs a tenth of that. Only for our own services (they always send Content-Length)."""

    def __init__(self, url: str, headers: dict[str, str]):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = "".join(
            f"{k}: {v}\r\n" for k, v in {"Host": f"{self.host}:{self.port}", **headers}.items()
        )
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> int:
        """POST a JSON body; returns the status code (the body is read and dropped)."""
        request = (
            f"POST {path} HTTP/1.1\r\n{self.head}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if b"connection: close" in head.lower():
                await self.close()
            return status
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# Every answer a registry queued, a batch's one by one: (outbox id, notification id, answer JSON).
# ``SELECT ... FROM (FEEDBACK_ANSWERS) f WHERE f.notification_id = ANY($1::text[])``.
FEEDBACK_ANSWERS = """SELECT o.id, a ->> 'notification_id' AS notification_id, a AS answer
    FROM outbox o
    CROSS JOIN LATERAL (SELECT convert_from(o.value, 'UTF8')::jsonb -> 'data' AS d) AS v
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN o.event_type = 'exchange.feedback_batch.v1'
        THEN v.d -> 'answers' ELSE jsonb_build_array(v.d) END) AS a
    WHERE o.event_type IN ('exchange.feedback.v1', 'exchange.feedback_batch.v1')"""
