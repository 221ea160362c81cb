"""Loading inter-jurisdiction agreements (双向协议) into the exchange's database."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import yaml

from services.migrant_exchange.settings import ExchangeSettings


async def load_agreements(conn: asyncpg.Connection, settings: ExchangeSettings) -> int:
    if settings.agreements_file:
        entries = yaml.safe_load(Path(settings.agreements_file).read_text(encoding="utf-8")) or []
    elif settings.environment != "production":
        entries = [{"division_a": "*", "division_b": "*", "event_types": ["*"]}]
    else:
        return 0
    for e in entries:
        a, b = sorted((str(e["division_a"]), str(e["division_b"])))
        await conn.execute(
            """INSERT INTO agreements (division_a, division_b, event_types, deadline_seconds, visible_fields)
               VALUES ($1,$2,$3,$4,$5) ON CONFLICT (division_a, division_b) DO UPDATE SET
                 event_types = EXCLUDED.event_types, deadline_seconds = EXCLUDED.deadline_seconds,
                 visible_fields = EXCLUDED.visible_fields""",
            a,
            b,
            list(e.get("event_types") or ["*"]),
            float(e.get("deadline_seconds") or settings.feedback_deadline_seconds),
            e.get("visible_fields") or {},
        )
    return len(entries)
