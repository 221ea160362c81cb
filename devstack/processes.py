"""The services as operating-system processes: start one, wait until it is ready, stop it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack.embedded import spawn
from devstack.layout import ROOT

# A service's own stop is bounded: uvicorn's 5 s for open connections, then the lifespan's
# SHUTDOWN_TIMEOUT (8 s, ``shared.shutdown``), which logs what it waited for when it overruns.
# The kill comes after both, so that line is written before it.
STOP_BOUND = 15.0


@dataclass
class ServiceProcess:
    name: str
    module: str
    port: int
    database: str
    env: dict[str, str] = field(default_factory=dict)
    jurisdictions: list[str] = field(default_factory=list)
    dsn: str = ""  # the owner's (migrations, operator tools, tests)
    service_dsn: str = ""  # the service's own role: no owner rights, no audit rewrites
    process: subprocess.Popen[bytes] | None = None
    replica: int = 0  # 0 for the first process of a service; others share its database and group

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_name(self) -> str:
        return self.name if self.replica == 0 else f"{self.name}.{self.replica}"


def launch(svc: ServiceProcess, env: dict[str, str], log_path: Path) -> None:
    """Start ``python -m <module> serve`` in a session of its own, logging to ``log_path``."""
    log = open(log_path, "ab")  # noqa: SIM115
    svc.process = spawn(
        [sys.executable, "-m", svc.module, "serve"],
        env=env,
        stdout=log,
        stderr=log,
        cwd=ROOT,
        start_new_session=True,
    )


def wait_ready(svc: ServiceProcess, log_path: Path, timeout: float = 30.0) -> None:
    """Until ``/readyz`` answers 200 with every consumer assigned; fails if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.process and svc.process.poll() is not None:
            raise RuntimeError(f"{svc.name} exited; see {log_path}")
        try:
            r = httpx.get(svc.url + "/readyz", timeout=2)
            if r.status_code == 200 and all(v == "assigned" for v in r.json().get("consumers", {}).values()):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{svc.name} not ready after {timeout}s")


def stop_process(svc: ServiceProcess, sig: int = signal.SIGTERM) -> None:
    """Send ``sig``; kill the process if it has not exited ``STOP_BOUND`` seconds later."""
    stop_processes([svc], sig)


def stop_processes(svcs: list[ServiceProcess], sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to every running one at once, then wait for them together: each shuts down
    (drains, closes its Kafka clients) while the others do, not after them. Whatever has not
    exited ``STOP_BOUND`` seconds after the signal is killed."""
    running = [svc.process for svc in svcs if svc.process and svc.process.poll() is None]
    for process in running:
        process.send_signal(sig)
    deadline = time.monotonic() + STOP_BOUND
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
