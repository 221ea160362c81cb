"""`python -m shared.topics create`: create every topic and its DLQ (used by the Helm topics Job)."""

from __future__ import annotations

import asyncio
import sys

from shared.kafka import all_topics, ensure_topics
from shared.settings import KafkaSettings


def main(argv: list[str]) -> int:
    if argv[1:] == ["list"]:
        print("\n".join(all_topics()))
        return 0
    if argv[1:] != ["create"]:
        print("usage: python -m shared.topics create|list", file=sys.stderr)
        return 2
    created = asyncio.run(ensure_topics(KafkaSettings(service_name="topics")))
    print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
