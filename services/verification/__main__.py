"""``python -m services.verification serve|migrate``."""

import sys
from pathlib import Path

from services.verification.settings import VerificationSettings
from shared.app import run_cli

if __name__ == "__main__":
    raise SystemExit(
        run_cli(
            "verification",
            VerificationSettings(),
            "services.verification.entrypoints.api:create_app",
            Path(__file__).parent / "migrations",
            sys.argv,
        )
    )
