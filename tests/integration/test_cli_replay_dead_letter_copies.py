"""``exchangectl replay`` rebuilds from the producers' own events, never from the copies of the
messages their consumers dead-lettered (real PostgreSQL).

A consumer that gives up on a message queues a copy of it in its service's outbox for
``<topic>.dlq`` (``shared.dead_letters.keep``), under the type the message's own ``ce_type``
header names. Here a registry's disclosure consumer is handed a forged ``person.registered.v1``
on ``audit.disclosure.v1`` (a topic every party may write to), unsigned and claiming the
registry itself as its source: refused on arrival, its copy lies in the registry's outbox beside
the registry's own events. A rebuild of the exchange roster from that outbox, in one go or event
by event, applies the registry's own registration and not the forged one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from cli.common import StackInfo
from cli.consumers import consumer_for_topic, service_consumers
from cli.replay_cmd import projection, replay
from devstack.embedded import EmbeddedPostgres
from shared.db import create_pool, migrate, unit_of_work
from shared.events import payloads as p
from shared.events.catalog import DISCLOSURE_TOPIC, DLQ_SUFFIX
from shared.identity import compose_id_number, subject_key
from shared.outbox import add_event
from tests.exchange.exchange_helpers import person_event

ROOT = Path(__file__).resolve().parents[2]
REGISTRY, ELSEWHERE = "320412", "440703"
SECRET = b"replay-dead-letter-copies"


def _person(n: int, hukou: str) -> tuple[str, p.PersonRegisteredV1]:
    born = dt.date(1990, 1, 1) + dt.timedelta(days=n)
    id_number = compose_id_number("110101", born, n, "F")
    data = p.PersonRegisteredV1(
        id_number=id_number,
        name="测试",
        sex="F",
        birth_date=born,
        hukou_division=hukou,
        residence_division=hukou,
    )
    return subject_key(id_number, SECRET), data


def _forged(id_number: str) -> ConsumerRecord[bytes, bytes]:
    """A registration in the registry's name, unsigned, on the disclosure topic, as a broker
    would deliver it; its headers name its real type, as a producer's relay would write them."""
    forged = person_event(id_number, REGISTRY, ELSEWHERE, ELSEWHERE)
    value = forged.model_dump_json(exclude_none=True).encode()
    headers = [("ce_type", forged.type.encode()), ("ce_source", forged.source.encode())]
    return ConsumerRecord(DISCLOSURE_TOPIC, 0, 7, 0, 0, b"k", value, None, 1, len(value), headers)


async def _registry_with_a_dead_letter(dsn: str) -> tuple[str, str]:
    """The registry's own registration in its outbox, and the forged one its consumer refused:
    (own subject, forged id number)."""
    await migrate(dsn, "registry", ROOT / "services" / "registry" / "migrations")
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        own_subject, own = _person(1, REGISTRY)
        async with unit_of_work(pool, wake=False) as conn:
            await add_event(
                conn,
                event_type="person.registered.v1",
                source=f"/registry/{REGISTRY}",
                subject=own_subject,
                data=own,
                origin=REGISTRY,
            )
        forged_id = compose_id_number("110101", dt.date(1985, 5, 5), 9, "F")
        consumers = service_consumers(f"registry-{REGISTRY}", pool, dsn, [REGISTRY])
        await consumer_for_topic(consumers, DISCLOSURE_TOPIC).process([_forged(forged_id)])
        copies = await pool.fetch(
            "SELECT event_type, topic FROM outbox WHERE topic LIKE '%' || $1", DLQ_SUFFIX
        )
        assert [(r["event_type"], r["topic"]) for r in copies] == [
            ("person.registered.v1", DISCLOSURE_TOPIC + DLQ_SUFFIX)
        ]  # refused on arrival, its copy queued in the registry's outbox under the type it claims
    finally:
        await pool.close()
    return own_subject, forged_id


@pytest.mark.parametrize("event_by_event", [False, True], ids=["bulk", "event-by-event"])
async def test_a_roster_rebuild_leaves_out_the_registrys_dead_letter_copies(
    pg: EmbeddedPostgres, event_by_event: bool
) -> None:
    registry_dsn = pg.create_database(f"replaydlq_registry_{int(event_by_event)}")
    exchange_dsn = pg.create_database(f"replaydlq_exchange_{int(event_by_event)}")
    own_subject, forged_id = await _registry_with_a_dead_letter(registry_dsn)
    await migrate(exchange_dsn, "migrant_exchange", ROOT / "services" / "migrant_exchange" / "migrations")
    info = StackInfo(
        Path("/nonexistent/stack.json"),
        [f"registry-{REGISTRY}={registry_dsn}", f"migrant_exchange={exchange_dsn}"],
    )

    result: dict[str, Any] = await replay(
        info, projection("exchange-roster", info, None), None, 100, event_by_event=event_by_event
    )

    pool = await create_pool(exchange_dsn, min_size=1, max_size=1)
    try:
        roster = {r["subject"]: r["hukou_division"] for r in await pool.fetch("SELECT * FROM roster")}
    finally:
        await pool.close()
    forged_subject = person_event(forged_id, REGISTRY, ELSEWHERE, ELSEWHERE).subject
    assert forged_subject not in roster  # refused on arrival, not applied on rebuild either
    assert roster == {own_subject: REGISTRY}
    assert result["events"] == 1


async def test_an_event_by_event_rebuild_goes_past_an_event_its_handler_refuses(pg: EmbeddedPostgres) -> None:
    """An event the live exchange refused (here a pregnancy from a registry that is neither the
    mother's hukou nor her residence on the roster) is still in its producer's outbox, the durable
    log. Replayed event by event through the exchange's handler, it is refused again and counted,
    its savepoint rolled back, and the events after it are applied: one refusal no longer stops
    the whole rebuild."""
    registry_dsn = pg.create_database("replayrefused_registry")
    exchange_dsn = pg.create_database("replayrefused_exchange")
    await migrate(registry_dsn, "registry", ROOT / "services" / "registry" / "migrations")
    await migrate(exchange_dsn, "migrant_exchange", ROOT / "services" / "migrant_exchange" / "migrations")
    her_subject, her = _person(1, ELSEWHERE)  # registered and living elsewhere, on the roster so
    after_subject, after = _person(2, REGISTRY)
    pregnancy = p.PregnancyRegisteredV1(
        pregnancy_id=uuid.uuid4(),
        mother_id_number=her.id_number,
        registered_in=REGISTRY,
        registered_on=dt.date(2026, 3, 1),
    )
    pool = await create_pool(registry_dsn, min_size=1, max_size=2)
    try:
        async with unit_of_work(pool, wake=False) as conn:
            for event_type, subject, data in (
                ("person.registered.v1", her_subject, her),
                ("pregnancy.registered.v1", her_subject, pregnancy),
                ("person.registered.v1", after_subject, after),
            ):
                await add_event(conn, event_type=event_type, source=f"/registry/{REGISTRY}",
                                subject=subject, data=data, origin=REGISTRY)  # fmt: skip
    finally:
        await pool.close()
    info = StackInfo(
        Path("/nonexistent/stack.json"),
        [f"registry-{REGISTRY}={registry_dsn}", f"migrant_exchange={exchange_dsn}"],
    )

    result = await replay(info, projection("exchange-roster", info, None), None, 100, event_by_event=True)

    assert (result["events"], result["refused"]) == (3, 1), result
    pool = await create_pool(exchange_dsn, min_size=1, max_size=1)
    try:
        roster = {r["subject"]: r["hukou_division"] for r in await pool.fetch("SELECT * FROM roster")}
        notified = await pool.fetchval(
            "SELECT count(*) FROM notifications WHERE event_type = 'pregnancy.registered.v1'"
        )
    finally:
        await pool.close()
    assert roster == {her_subject: ELSEWHERE, after_subject: REGISTRY}
    assert notified == 0  # the refused pregnancy reached nobody on rebuild either
