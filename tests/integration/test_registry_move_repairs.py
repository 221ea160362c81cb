"""Reconciliation repairs of moves leave her residence where her last move takes her, as recording or
being notified of the move would (``residence-follows-last-move``): a move restored whole, and a
held move brought in line, applied as the consumer applies a counterpart's ``record.corrected.v1``
on a real, migrated PostgreSQL database. Before, both were answered ``applied`` (so the exchange
marked the case resolved) with her residence still where the move, missing or wrong, had left it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson

from services.registry.service_layer.counterpart import apply_notification
from services.registry.settings import RegistrySettings
from shared.db import create_pool, migrate
from tests.helpers import notification, person_id

HERE, THERE, ELSEWHERE, FARTHER = "320412", "440703", "110101", "310101"


def _person(number: str, hukou: str, residence: str) -> dict[str, Any]:
    born = f"{number[6:10]}-{number[10:12]}-{number[12:14]}"
    return {"id_number": number, "name": "修复", "sex": "F", "birth_date": born,
            "hukou_division": hukou, "residence_division": residence}  # fmt: skip


def _move(number: str, move_id: str, frm: str, to: str, when: str) -> dict[str, Any]:
    """A departure, whole as a repair carries it (``domain.repairs.WholeMigration``)."""
    return {"migration_id": move_id, "id_number": number, "kind": "departed",
            "from_division": frm, "to_division": to, "migration_date": when}  # fmt: skip


def _notified(move: dict[str, Any], hukou: str) -> dict[str, Any]:
    """The same departure as its ``migration.departed.v1`` says it."""
    return {k: v for k, v in move.items() if k != "kind"} | {"name": "修复", "hukou_division": hukou}


def _repair(move: dict[str, Any]) -> dict[str, Any]:
    """A counterpart's repair sending ``move`` whole, as ``send_repair`` writes it."""
    return {"correction_id": str(uuid.uuid4()), "corrected_event_id": str(uuid.uuid4()),
            "record_type": "migration", "record_id": move["migration_id"], "changes": move,
            "reason": "repair of reconciliation case 1"}  # fmt: skip


async def _apply(dsn: str, number: str, sent: list[tuple[str, dict[str, Any], str]]) -> list[Any]:
    """``sent`` (event type, payload, source) applied in order, each in its own unit of work as the
    consumer applies it: the outcome of each and where she lives after each."""
    await migrate(dsn, "registry", Path("services/registry/migrations"))
    pool = await create_pool(dsn, min_size=1, max_size=1)
    settings = RegistrySettings(database_url=dsn, jurisdictions=HERE)
    seen = []
    try:
        async with pool.acquire() as conn:
            for event_type, payload, source in sent:
                event = notification(HERE, event_type, payload, source)
                async with conn.transaction():
                    await apply_notification(conn, settings, event)
                answer = await conn.fetchval(
                    "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id DESC LIMIT 1"
                )
                lives = await conn.fetchval(
                    "SELECT residence_division FROM persons WHERE id_number = $1", number
                )
                seen.append((orjson.loads(answer)["data"]["outcome"], lives))
    finally:
        await pool.close()
    return seen


def test_a_restored_move_takes_her_residence_if_it_is_her_last(fresh_db: str) -> None:
    """Her arrival here (THERE's record of her departure to HERE) was missed: the repair that brings
    it back brings her here too. A move of her past restored after it leaves her where she is."""
    her = person_id("F")
    came = _move(her, str(uuid.uuid4()), THERE, HERE, "2025-01-01")
    past = _move(her, str(uuid.uuid4()), ELSEWHERE, THERE, "2020-01-01")
    sent = [
        ("person.registered.v1", _person(her, THERE, THERE), THERE),
        ("record.corrected.v1", _repair(came), THERE),
        ("record.corrected.v1", _repair(past), THERE),
    ]
    seen = asyncio.run(_apply(fresh_db, her, sent))
    assert seen == [("applied", THERE), ("applied", HERE), ("applied", HERE)]


def test_a_move_brought_in_line_takes_her_residence_if_it_is_her_last(fresh_db: str) -> None:
    """Her registry of origin holds her two departures as notified, each with a wrong destination:
    the repair of the first leaves her where the second took her; the repair of the second, her
    last move, takes her where it really went."""
    her = person_id("F")
    first = _move(her, str(uuid.uuid4()), THERE, ELSEWHERE, "2023-01-01")
    second = _move(her, str(uuid.uuid4()), ELSEWHERE, THERE, "2024-01-01")
    sent = [
        ("person.registered.v1", _person(her, HERE, THERE), THERE),
        ("migration.departed.v1", _notified({**first, "to_division": FARTHER}, HERE), THERE),
        ("migration.departed.v1", _notified({**second, "from_division": FARTHER}, HERE), ELSEWHERE),
        ("record.corrected.v1", _repair({**first}), THERE),
        ("record.corrected.v1", _repair({**second, "to_division": FARTHER}), ELSEWHERE),
    ]
    seen = asyncio.run(_apply(fresh_db, her, sent))
    assert seen == [
        ("applied", THERE),
        ("applied", FARTHER),
        ("applied", THERE),
        ("applied", THERE),  # not her last move: she stays where the second took her
        ("applied", FARTHER),
    ]
