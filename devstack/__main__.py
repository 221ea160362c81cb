"""``python -m devstack run``: the whole system on the embedded stack, until Ctrl-C."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from devstack.seed import seed
from devstack.stack import ROOT, Stack

console = Console()


def run() -> int:
    started = time.monotonic()
    stack = Stack(ROOT / ".run", fixed_ports=True)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # Ctrl-C and SIGTERM both stop everything; set explicitly, since a shell may start us with SIGINT ignored.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        with console.status("starting PostgreSQL, the broker and the services"):
            stack.start()
            demo = seed(stack)
        description = stack.describe() | {"demo": demo}
        (stack.run_dir / "stack.json").write_text(json.dumps(description, indent=2, ensure_ascii=False))
        _print(stack, demo, time.monotonic() - started)
        while not stopping:
            time.sleep(0.5)
            # What was started is kept running: a crashed broker, PostgreSQL or service is
            # restarted and the services recover by themselves.
            for line in stack.supervise_once():
                console.print(f"[yellow]{time.strftime('%H:%M:%S')} {line}")
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping everything that was started")
        stack.stop()
    return 0


def _print(stack: Stack, demo: dict[str, str], seconds: float) -> None:
    table = Table(title=f"Exchange ready in {seconds:.1f}s (Ctrl-C stops everything)")
    table.add_column("service")
    table.add_column("URL")
    table.add_column("jurisdictions")
    for svc in stack.services:
        table.add_row(svc.name, svc.url, ",".join(svc.jurisdictions))
    console.print(table)
    urls = stack.describe()["urls"]
    console.print(f"dashboard: {urls['dashboard']}\nkiosk:     {urls['kiosk']}")
    console.print(f"API docs:  {', '.join(urls['api_docs'].values())}")
    console.print(f"broker:    {stack.bootstrap}")
    for code in stack.rest_only:
        console.print(f"REST-only: {code} (client reg-{code}, no registry: it uses the exchange's REST API)")
    console.print(f"demo certificate {demo['certificate_number']}; credentials in {Path('.run/stack.json')}")


if __name__ == "__main__":
    if sys.argv[1:] != ["run"]:
        print("usage: python -m devstack run")
        raise SystemExit(2)
    raise SystemExit(run())
