"""``python -m services.migrant_exchange serve|migrate`` (dead letters: ``exchangectl dlq``)."""

import sys
from pathlib import Path

from services.migrant_exchange.settings import ExchangeSettings
from shared.app import run_cli

if __name__ == "__main__":
    raise SystemExit(
        run_cli(
            "migrant_exchange",
            ExchangeSettings(),
            "services.migrant_exchange.entrypoints.app:create_app",
            Path(__file__).parent / "migrations",
            sys.argv,
        )
    )
