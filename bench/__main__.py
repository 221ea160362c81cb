"""``make bench``: every benchmark module of this folder, results written to docs/benchmarks.md.

A benchmark module has ``run() -> dict`` and ``markdown(result) -> str``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
from pathlib import Path

HERE = Path(__file__).parent
DOCS = HERE.parent / "docs" / "benchmarks.md"


def main() -> None:
    sections = []
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{path.stem}")
        if not hasattr(module, "run") or not hasattr(module, "markdown"):
            continue
        print(f"running {path.stem}", flush=True)
        result = module.run()
        print(json.dumps(result, indent=2), flush=True)
        sections.append(module.markdown(result))
    header = (
        f"# Benchmarks\n\nMeasured by `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end.\n\n"
    )
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(header + "\n".join(sections), encoding="utf-8")
    print(f"written to {DOCS}")


if __name__ == "__main__":
    main()
