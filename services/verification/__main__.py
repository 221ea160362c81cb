"""``python -m services.verification serve|migrate|audit-verify`` (rebuild: ``exchangectl replay verification``)."""

import sys
from pathlib import Path

from services.verification.settings import VerificationSettings
from shared.app import run_cli

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command == "audit-verify":
        from services.verification.entrypoints import commands

        raise SystemExit(commands.main(command, VerificationSettings()))
    raise SystemExit(
        run_cli(
            "verification",
            VerificationSettings(),
            "services.verification.entrypoints.app:create_app",
            Path(__file__).parent / "migrations",
            sys.argv,
        )
    )
