"""``python -m services.registry serve|migrate``."""

import sys
from pathlib import Path

from services.registry.settings import RegistrySettings
from shared.app import run_cli

if __name__ == "__main__":
    raise SystemExit(
        run_cli(
            "registry",
            RegistrySettings(),
            "services.registry.entrypoints.app:create_app",
            Path(__file__).parent / "migrations",
            sys.argv,
        )
    )
