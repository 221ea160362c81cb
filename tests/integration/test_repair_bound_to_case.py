"""A repair resolves its case only if it is that repair: a correction carrying a case's repair id
is taken as the repair when the registry asked to send it sends it about the case's person,
kind of record and record. A sender that puts the id on a correction of another record (someone
else's, even under her subject, or another of her moves) gets that
correction routed as what it is, and the case keeps waiting for the real repair (before, the
counterpart's answer to the other record would have resolved the case, its record still wrong).

The exchange's routing handler runs on a real, migrated PostgreSQL database.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.migrant_exchange.service_layer import handlers
from services.migrant_exchange.settings import ExchangeSettings
from shared.events import payloads as p
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


async def _open_case(pool: asyncpg.Pool, person: str, kind: str, key: str) -> uuid.UUID:
    """A case of ``person``'s ``kind`` of record ``key`` missing at B, its repair asked of A."""
    repair_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO discrepancies (id, kind, division_a, division_b, subject, record_kind, record_key,
                                      missing_at, state, resolution, repair_id, repair_state)
           VALUES ($1, 'missing', $2, $3, $4, $5, $6, $3, 'open', $7, $8, 'requested')""",
        uuid.uuid4(),
        A,
        B,
        subject_key(person, SECRET),
        kind,
        key,
        {"owner": A, "sender": A, "target": B, "registry_action": "send"},
        repair_id,
    )
    return repair_id


def _move(repair_id: uuid.UUID, person: str, move: str, sequence: int) -> Envelope[Any]:
    """A's repair naming ``repair_id``, sending ``person``'s move ``move`` whole."""
    data = {
        "correction_id": str(repair_id),
        "corrected_event_id": str(uuid.uuid4()),
        "record_type": "migration",
        "record_id": move,
        "changes": {
            "migration_id": move,
            "id_number": person,
            "kind": "departed",
            "from_division": A,
            "to_division": B,
            "migration_date": "2024-03-01",
        },
        "reason": "repair of reconciliation case",
    }
    return event("record.corrected.v1", A, data, subject_key(person, SECRET), sequence, origin=A)


async def _answer_applied(pool: asyncpg.Pool, lie: Envelope[Any]) -> None:
    """B answers ``applied`` to the notification of ``lie`` (it holds that record as sent)."""
    notification_id = await pool.fetchval(
        "SELECT id FROM notifications WHERE event_id = $1 AND target_division = $2", lie.id, B
    )
    feedback = p.ExchangeFeedbackV1(
        notification_id=notification_id,
        from_division=B,
        outcome="applied",
        applied_at=dt.datetime.now(dt.UTC),
    )
    async with pool.acquire() as conn, conn.transaction():
        await handlers.record_feedback(conn, feedback)


CASE_STATE = "SELECT state, repair_state, repair_notification_id FROM discrepancies WHERE repair_id = $1"

# A case whose repair was asked for and never routed: open, as an operator left it.
STILL_REQUESTED = {"state": "open", "repair_state": "requested", "repair_notification_id": None}


async def test_a_repair_id_on_another_move_of_hers_resolves_nothing(pool: asyncpg.Pool) -> None:
    """Her move ``lost`` is missing at B; A puts the case's repair id on her other move, which B
    holds as sent and answers ``applied``: the case must not be resolved by it."""
    her = new_person()
    await _route(pool, [person_event(her, A, A, B)])
    lost, held = str(uuid.uuid4()), str(uuid.uuid4())
    repair_id = await _open_case(pool, her, "migration", lost)

    lie = _move(repair_id, her, held, 2)
    await _route(pool, [lie])
    await _answer_applied(pool, lie)
    assert dict(await pool.fetchrow(CASE_STATE, repair_id)) == STILL_REQUESTED

    repair = _move(repair_id, her, lost, 3)  # the repair itself
    await _route(pool, [repair])
    linked = await pool.fetchrow(CASE_STATE, repair_id)
    assert linked["repair_state"] == "awaiting_feedback"


async def test_a_repair_id_on_another_persons_record_under_her_subject_resolves_nothing(
    pool: asyncpg.Pool,
) -> None:
    """Her person record is missing at B; A sends, under her subject, a correction of another
    person's record (which B holds as sent) with the case's repair id: the case stays open."""
    her, other = new_person(), new_person()
    await _route(pool, [person_event(her, A, A, B), person_event(other, A, A, B)])
    repair_id = await _open_case(pool, her, "person", "person")

    lie = _correction(repair_id, other, 2)
    lie = lie.model_copy(update={"subject": subject_key(her, SECRET)})
    await _route(pool, [lie])
    await _answer_applied(pool, lie)
    assert dict(await pool.fetchrow(CASE_STATE, repair_id)) == STILL_REQUESTED

    await _route(pool, [_correction(repair_id, her, 3)])
    assert (await pool.fetchrow(CASE_STATE, repair_id))["repair_state"] == "awaiting_feedback"
