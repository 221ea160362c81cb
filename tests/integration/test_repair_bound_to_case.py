"""A repair resolves its case only if it is that repair: a correction carrying a case's repair id
is taken as the repair when the registry asked to send it sends it about the case's person and
kind of record. A sender that puts the id on a correction of someone else's record gets that
correction routed as what it is, and the case keeps waiting for the real repair (before, the
counterpart's answer to the other record would have resolved the case, its record still wrong).

The exchange's routing handler runs on a real, migrated PostgreSQL database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.migrant_exchange.settings import ExchangeSettings
from shared.events.envelope import Envelope
from shared.identity import subject_key
from tests.exchange.exchange_helpers import (
    SECRET,
    A,
    B,
    event,
    migrated_exchange,
    new_person,
    person_event,
    route,
)

SETTINGS = ExchangeSettings(subject_key_secret=SECRET.decode())


@pytest.fixture
async def pool(pg: Any) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_exchange(pg, "repair") as made:
        yield made


async def _route(pool: asyncpg.Pool, events: list[Envelope[Any]]) -> None:
    await route(pool, SETTINGS, events)


def _correction(repair_id: uuid.UUID, person: str, sequence: int) -> Envelope[Any]:
    """A's correction of a person's record, naming ``repair_id`` as its correction id."""
    data = {
        "correction_id": str(repair_id),
        "corrected_event_id": str(uuid.uuid4()),
        "record_type": "person",
        "record_id": person,
        "changes": {"name": "王静"},
        "reason": "repair of reconciliation case",
    }
    return event("record.corrected.v1", A, data, subject_key(person, SECRET), sequence, origin=A)


async def test_a_repair_id_on_another_persons_correction_resolves_nothing(pool: asyncpg.Pool) -> None:
    her, other = new_person(), new_person()
    await _route(pool, [person_event(her, A, A, B), person_event(other, A, A, B)])
    repair_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO discrepancies (id, kind, division_a, division_b, subject, record_kind, record_key,
                                      missing_at, state, resolution, repair_id, repair_state)
           VALUES ($1, 'missing', $2, $3, $4, 'person', 'person', $3, 'open', $5, $6, 'requested')""",
        uuid.uuid4(),
        A,
        B,
        subject_key(her, SECRET),
        {"owner": A, "sender": A, "target": B, "registry_action": "send"},
        repair_id,
    )
    case = "SELECT repair_state, repair_notification_id FROM discrepancies WHERE repair_id = $1"

    lie = _correction(repair_id, other, 2)  # another person's record under her case's repair id
    await _route(pool, [lie])
    routed = await pool.fetchval("SELECT count(*) FROM notifications WHERE event_id = $1", lie.id)
    assert routed == 1  # routed to B as the correction it is ...
    assert dict(await pool.fetchrow(case, repair_id)) == {
        "repair_state": "requested",
        "repair_notification_id": None,
    }

    repair = _correction(repair_id, her, 2)  # the repair itself
    await _route(pool, [repair])
    linked = await pool.fetchrow(case, repair_id)
    assert linked["repair_state"] == "awaiting_feedback"
    assert linked["repair_notification_id"] == await pool.fetchval(
        "SELECT id FROM notifications WHERE event_id = $1", repair.id
    )
