"""A pregnancy is routed only when one of the mother's own two registries registered it (real PostgreSQL).

Pregnancy data is shared only between the mother's place of household registration (hukou) and
her place of residence (DESIGN section 8). The registry refuses at its own route to register the
pregnancy of a woman neither registered nor resident there (``registered-at-hukou-or-residence``);
a registry that lies skips its route and publishes a signed ``pregnancy.registered.v1`` naming
itself as ``registered_in``, which the envelope check lets through. The exchange refuses it
(``not_authorized``) when its roster knows the mother and the producer is neither of her two
places as the roster has them before this event: event by event, in a parked event's turn, and
the batch way, in the batch's order (her arrival earlier in the same batch makes the producer her
residence). A mother the roster does not know is routed as before.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.migrant_exchange.service_layer import batches, messagebus
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import unit_of_work
from shared.events.envelope import Envelope
from shared.events.signature import Rejected
from shared.outbox import batched
from tests.exchange.exchange_helpers import SECRET, A, B, C, Registries, migrated_exchange, new_person, route

SETTINGS = ExchangeSettings(subject_key_secret=SECRET.decode())
D = "510104"
NOT_HERS = "neither her hukou nor her residence"


@pytest.fixture
async def pool(pg: Any) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_exchange(pg, "pregauth") as made:
        yield made


class Events(Registries):
    """The shared numbering (with its moves and pregnancies), and the arrivals and marriages these
    tests send."""

    def arrival(self, producer: str, who: str, hukou: str, src: str) -> Envelope[Any]:
        return self.move("arrived", producer, who, hukou, src, producer, date="2025-02-01")

    def marriage(self, producer: str, husband: str, wife: str) -> Envelope[Any]:
        data = {
            "marriage_id": str(uuid.uuid4()),
            "spouse_a_id_number": husband,
            "spouse_a_name": "甲",
            "spouse_b_id_number": wife,
            "spouse_b_name": "乙",
            "marriage_date": "2024-05-20",
            "registered_in": producer,
        }
        return self.make("marriage.registered.v1", producer, data, wife)


async def _targets(pool: asyncpg.Pool, event: Envelope[Any]) -> set[str]:
    rows = await pool.fetch("SELECT target_division FROM notifications WHERE event_id = $1", event.id)
    return {r["target_division"] for r in rows}


async def _holders(pool: asyncpg.Pool, pregnancy: Envelope[Any]) -> set[str]:
    rows = await pool.fetch(
        "SELECT division FROM record_holders WHERE record_type = 'pregnancy' AND record_id = $1",
        pregnancy.data.pregnancy_id,
    )
    return {r["division"] for r in rows}


async def _roster(pool: asyncpg.Pool, event: Envelope[Any]) -> tuple[str, str]:
    row = await pool.fetchrow(
        "SELECT hukou_division, residence_division FROM roster WHERE subject = $1", event.subject
    )
    assert row is not None
    return row["hukou_division"], row["residence_division"]


async def _in_batches(pool: asyncpg.Pool, events: list[Envelope[Any]]) -> None:
    """The routing consumer's whole-batch handler on one fetch, as one unit of work."""
    async with unit_of_work(pool) as conn, batched(conn):
        await messagebus.in_batches(SETTINGS)(conn, events)


async def _folded(pool: asyncpg.Pool, events: list[Envelope[Any]]) -> None:
    """The batch way's fold itself (``batches.route``), as one unit of work. ``batches.plain`` sends
    a batch holding a pregnancy event by event today; the fold must hold the rule on its own."""
    async with unit_of_work(pool) as conn, batched(conn):
        await batches.route(conn, SETTINGS, events)


WAYS = {"one by one": lambda pool, events: route(pool, SETTINGS, events), "in a batch": _in_batches}


@pytest.mark.parametrize("way", ["one by one", "in a batch", "folded"])
async def test_a_pregnancy_registered_by_neither_of_her_registries_is_refused(
    pool: asyncpg.Pool, way: str
) -> None:
    """A woman of A living at B. C, with its own valid key, registers her pregnancy: refused as not
    authorized, routed to nobody, held by nobody, her roster row as it was. Her own two registries'
    pregnancies go through, each to the other."""
    r = Events()
    mother = new_person()
    await route(pool, SETTINGS, [r.person(mother, A, A, B)])
    lie = r.pregnancy(C, mother, origin=A, destination=C)
    send = _folded if way == "folded" else WAYS[way]
    with pytest.raises(Rejected, match=NOT_HERS) as refused:
        await send(pool, [lie])
    assert refused.value.reason == "not_authorized"
    assert await _targets(pool, lie) == set()
    assert await _holders(pool, lie) == set()
    assert await _roster(pool, lie) == (A, B)

    at_hukou, at_residence = r.pregnancy(A, mother, origin=A), r.pregnancy(B, mother, origin=A)
    await send(pool, [at_hukou, at_residence])
    assert await _targets(pool, at_hukou) == {B}
    assert await _targets(pool, at_residence) == {A}


async def test_a_pregnancy_of_a_woman_the_roster_does_not_know_is_routed_as_before(
    pool: asyncpg.Pool,
) -> None:
    """Nothing of hers was routed yet (she was registered before the exchange kept a roster, say):
    there is nothing to hold the producer to, and the pregnancy goes as it comes, to the origin
    its envelope names."""
    r = Events()
    mother = new_person()
    unknown = r.pregnancy(C, mother, origin=A, destination=C)
    await route(pool, SETTINGS, [unknown])
    assert await _targets(pool, unknown) == {A}


@pytest.mark.parametrize("way", ["in a batch", "folded"])
async def test_her_arrival_earlier_in_the_same_batch_makes_the_producer_her_registry(
    pool: asyncpg.Pool, way: str
) -> None:
    """A woman of A living at B arrives at C, and C registers her pregnancy, both in one fetch: the
    roster as of the pregnancy (in the batch's order) has her living at C, so it goes to A. A
    pregnancy B registers after her arrival at C in the same batch is refused: B is no longer hers."""
    r = Events()
    mother, other = new_person(), new_person()
    await route(pool, SETTINGS, [r.person(mother, A, A, B), r.person(other, A, A, B)])
    send = _folded if way == "folded" else _in_batches
    arrival = r.arrival(C, mother, A, B)
    registered = r.pregnancy(C, mother, origin=A, destination=C)
    await send(pool, [arrival, registered])
    assert await _targets(pool, registered) == {A}
    assert await _holders(pool, registered) == {A, C}

    moved_on = r.arrival(C, other, A, B)
    late = r.pregnancy(B, other, origin=A, destination=B)
    with pytest.raises(Rejected, match=NOT_HERS):
        await send(pool, [moved_on, late])
    assert await _targets(pool, moved_on) == set()  # the whole batch refused: nothing written
    assert await _roster(pool, moved_on) == (A, B)


@pytest.mark.parametrize("way", ["in a batch", "folded"])
async def test_a_pregnancy_before_her_arrival_in_the_same_batch_is_refused(
    pool: asyncpg.Pool, way: str
) -> None:
    """C's pregnancy (its event 1) and her arrival at C (its event 2) in one fetch: the pregnancy
    comes before the arrival, when C is not hers yet. The batch is refused and writes nothing (the
    consumer then takes it event by event, and dead-letters the pregnancy alone)."""
    r = Events()
    mother = new_person()
    await route(pool, SETTINGS, [r.person(mother, A, A, B)])
    early = r.pregnancy(C, mother, origin=A, destination=B)
    arrival = r.arrival(C, mother, A, B)
    with pytest.raises(Rejected, match=NOT_HERS):
        await (_folded if way == "folded" else _in_batches)(pool, [early, arrival])
    assert await _targets(pool, early) == await _targets(pool, arrival) == set()
    assert await _roster(pool, arrival) == (A, B)


async def test_a_parked_pregnancy_from_neither_of_her_registries_is_refused_in_its_turn(
    pool: asyncpg.Pool,
) -> None:
    """C's pregnancy of a woman of A living at B (its event 2) arrives before C's marriage of hers
    (event 1) and waits. When the marriage arrives, the pregnancy takes its turn and is refused:
    it alone is dead-lettered, the marriage is routed, and the ordering moves past both."""
    r = Events()
    mother, husband = new_person(), new_person(sex="M")
    await route(pool, SETTINGS, [r.person(mother, A, A, B), r.person(husband, A, A, A, sex="M")])
    marriage = r.marriage(C, husband, mother)
    lie = r.pregnancy(C, mother, origin=A, destination=B)
    await route(pool, SETTINGS, [lie, marriage])
    assert await _targets(pool, marriage) == {A, B}
    assert await _targets(pool, lie) == set()
    [letter] = await pool.fetch(
        "SELECT consumer, topic, reason FROM dead_letters WHERE convert_from(value, 'UTF8') LIKE $1",
        f'%"id":"{lie.id}"%',
    )
    assert letter["consumer"] == "migrant-exchange-events" and letter["topic"] == "vital.pregnancy.v1"
    assert letter["reason"].startswith("rejected: not_authorized") and NOT_HERS in letter["reason"]
    progress = "SELECT last_sequence FROM sequence_progress WHERE subject = $1 AND source = $2"
    assert await pool.fetchval(progress, lie.subject, f"/registry/{C}") == 2
