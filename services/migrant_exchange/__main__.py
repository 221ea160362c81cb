"""``python -m services.migrant_exchange serve|migrate|dlq list|dlq replay ID``."""

import asyncio
import sys
from pathlib import Path

from services.migrant_exchange.settings import ExchangeSettings
from shared.app import run_cli


async def _dlq(settings: ExchangeSettings, args: list[str]) -> int:
    from services.migrant_exchange.entrypoints.consumer import event_consumer
    from services.migrant_exchange.service_layer import dead_letters
    from shared.db import create_pool

    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        if args[:1] == ["list"]:
            for row in await dead_letters.list_dead_letters(pool, include_replayed="--all" in args):
                print(f"{row['id']}\t{row['created_at']:%Y-%m-%d %H:%M:%S}\t{row['topic']}\t{row['reason']}")
            return 0
        if len(args) == 2 and args[0] == "replay" and args[1].isdigit():
            ok, message = await dead_letters.replay(pool, event_consumer(pool, settings), int(args[1]))
            print(f"dead letter {args[1]}: {message}")
            return 0 if ok else 1
        print("usage: python -m services.migrant_exchange dlq list [--all] | dlq replay ID", file=sys.stderr)
        return 2
    finally:
        await pool.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["dlq"]:
        raise SystemExit(asyncio.run(_dlq(ExchangeSettings(), sys.argv[2:])))
    raise SystemExit(
        run_cli(
            "migrant_exchange",
            ExchangeSettings(),
            "services.migrant_exchange.entrypoints.api:create_app",
            Path(__file__).parent / "migrations",
            sys.argv,
        )
    )
