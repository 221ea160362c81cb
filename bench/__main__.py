"""``python -m bench`` (``make bench``): run every benchmark module of this folder."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

if __name__ == "__main__":
    status = 0
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem.startswith("_") or path.stem == "bare_lookup":
            continue
        module = importlib.import_module(f"bench.{path.stem}")
        if hasattr(module, "main"):
            print(f"== bench.{path.stem}")
            status |= int(module.main() or 0)
    sys.exit(status)
