"""Two registrar batches about the same people in opposite orders, on a registry served in-process
over a real PostgreSQL: each batch locks the rows of every person its items touch, sorted, before
its first item, so the second waits for the first instead of the two deadlocking (which
PostgreSQL breaks by rolling one back: a 503 to retry, a failed batch at the busiest times)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from services.registry.service_layer.counterpart import apply_notifications
from services.registry.settings import RegistrySettings
from shared.db import init_connection
from tests.helpers import in_process_registry, lock_waiters, notification, person_id

HERE, THERE = "320412", "440703"
SECRET = "batchlock-secret"  # noqa: S105 - a throwaway credential of this test's own client


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "batchlock", HERE, SECRET) as (client, dsn):
        yield client, dsn


def _person_body(number: str, sex: str) -> dict[str, Any]:
    return {"id_number": number, "name": "批次", "sex": sex, "hukou_division": HERE,
            "birth_date": f"{number[6:10]}-{number[10:12]}-{number[12:14]}"}  # fmt: skip


def _registered(client: TestClient) -> dict[str, Any]:
    """A woman on record here, as her registration answered."""
    r = client.post("/v1/persons", json=_person_body(person_id("F"), "F"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def _name_correction(person: dict[str, Any]) -> dict[str, Any]:
    body = {"corrected_event_id": person["event_id"], "record_type": "person",
            "record_id": person["id_number"], "changes": {"name": "更正"}, "reason": "mistyped at the counter"}  # fmt: skip
    return {"kind": "correction", "body": body}


def _person(client: TestClient, sex: str) -> str:
    number = person_id(sex)
    assert client.post("/v1/persons", json=_person_body(number, sex)).status_code == 201
    return number


def _departed(client: TestClient) -> dict[str, Any]:
    """A resident who left on 2024-01-10: her move."""
    move = {"kind": "departed", "id_number": _person(client, "F"), "from_division": HERE,
            "to_division": THERE, "migration_date": "2024-01-10"}  # fmt: skip
    r = client.post("/v1/migrations", json=move)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _married(client: TestClient) -> dict[str, Any]:
    body = {"spouse_a_id_number": _person(client, "F"), "spouse_b_id_number": _person(client, "M"),
            "marriage_date": "2023-05-20"}  # fmt: skip
    r = client.post("/v1/marriages", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _move_correction(move: dict[str, Any], when: str) -> dict[str, Any]:
    body = {"corrected_event_id": move["event_id"], "record_type": "migration",
            "record_id": move["migration_id"], "changes": {"migration_date": when},
            "reason": "mistyped at the counter"}  # fmt: skip
    return {"kind": "correction", "body": body}


def _dissolution(marriage: dict[str, Any]) -> dict[str, Any]:
    body = {"dissolution_date": "2024-03-01", "reason": "divorce"}
    return {"kind": "marriage_dissolution", "target": marriage["marriage_id"], "body": body}


def _opposite_batches(
    client: TestClient,
    dsn: str,
    hold: tuple[str, list[Any]],
    first: list[Any],
    second: list[Any],
    keep: bool = True,
) -> tuple[Any, Any]:
    """``first`` and ``second`` posted as two batches while another transaction holds a row
    (``hold``: a locking statement and its arguments), so both queue for it, ``first`` before
    ``second``; then the row is freed (the holder commits, or with ``keep`` false rolls back: a
    row it inserted never was). Each batch's answer, or what the client raised."""

    async def run() -> tuple[Any, Any]:
        holder = await asyncpg.connect(dsn)
        try:
            held = holder.transaction()
            await held.start()
            try:
                await holder.execute(hold[0], *hold[1])
                one = asyncio.create_task(
                    asyncio.to_thread(client.post, "/v1/batches", json={"items": first})
                )
                await lock_waiters(holder, 1)
                two = asyncio.create_task(
                    asyncio.to_thread(client.post, "/v1/batches", json={"items": second})
                )
                await lock_waiters(holder, 2)
            except BaseException:
                await held.rollback()
                raise
            await (held.commit() if keep else held.rollback())
            # A deadlock raises here through the test client (a real client is answered 503).
            return await asyncio.gather(one, two, return_exceptions=True)
        finally:
            await holder.close()

    one, two = asyncio.run(run())
    return one, two


async def _apply_unit(dsn: str, settings: RegistrySettings, unit: list[Any]) -> None:
    """The consumer's unit of work: these notifications applied in one transaction, on a
    connection set up as the consumer's pool sets its connections up."""
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        async with conn.transaction():
            await apply_notifications(conn, settings, unit)
    finally:
        await conn.close()


def _statuses(answer: Any) -> list[int]:
    assert not isinstance(answer, BaseException), repr(answer)
    assert answer.status_code == 200, answer.text
    return [r["status"] for r in answer.json()["results"]]


def test_two_batches_correcting_two_peoples_moves_in_opposite_orders_both_pass(
    registry: tuple[TestClient, str],
) -> None:
    """One batch corrects X's move, then Y's; another Y's, then X's. X's row is held meanwhile
    (as a move of hers being recorded holds it): the first batch waits for it, the second takes
    Y... or, locking everyone first, waits behind the first. Once X is free both are recorded."""
    client, dsn = registry
    x, y = _departed(client), _departed(client)
    hold = (
        "SELECT 1 FROM persons WHERE jurisdiction = $1 AND id_number = $2 FOR UPDATE",
        [HERE, x["id_number"]],
    )
    first = [_move_correction(x, "2024-01-11"), _move_correction(y, "2024-01-11")]
    second = [_move_correction(y, "2024-01-12"), _move_correction(x, "2024-01-12")]
    one, two = _opposite_batches(client, dsn, hold, first, second)
    assert _statuses(one) == [201, 201]
    assert _statuses(two) == [201, 201]

    async def dates() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return [
                str(
                    await conn.fetchval(
                        "SELECT migration_date FROM migrations WHERE id = $1", m["migration_id"]
                    )
                )
                for m in (x, y)
            ]
        finally:
            await conn.close()

    assert asyncio.run(dates()) == ["2024-01-12", "2024-01-12"]  # the second batch, after the first


def test_two_batches_dissolving_two_marriages_in_opposite_orders_both_pass(
    registry: tuple[TestClient, str],
) -> None:
    """One batch dissolves marriage M, then N; another N, then M. M is held meanwhile (a single
    request dissolving it): the first batch dissolves both once M is free, and the second is
    told each is dissolved already (409 each), not failed whole."""
    client, dsn = registry
    m, n = _married(client), _married(client)
    hold = (
        "SELECT 1 FROM marriages WHERE jurisdiction = $1 AND id = $2 FOR UPDATE",
        [HERE, m["marriage_id"]],
    )
    one, two = _opposite_batches(
        client, dsn, hold, [_dissolution(m), _dissolution(n)], [_dissolution(n), _dissolution(m)]
    )
    assert _statuses(one) == [200, 200]
    assert _statuses(two) == [409, 409]


def _arrived_there(number: str) -> Any:
    """The counterpart's notification that she arrived there, as the consumer applies it here."""
    move = {"migration_id": str(uuid.uuid4()), "id_number": number, "name": "流动人员",
            "hukou_division": HERE, "from_division": HERE, "to_division": THERE,
            "migration_date": "2024-02-01"}  # fmt: skip
    return notification(HERE, "migration.arrived.v1", move, source=THERE)


def test_a_batch_and_the_consumers_unit_of_work_about_the_same_people_both_pass(
    registry: tuple[TestClient, str],
) -> None:
    """The consumer applies a counterpart's arrival of Y, her registration of Z, an arrival of X in
    one unit of work while a registrar's batch corrects the names of X and Y with a new person in
    between. Z's row is held meanwhile: the consumer, which took Y, waits for it; the batch takes
    X and waits for Y (or, everyone locked first, one waits for the other). Once Z is free both
    are written, neither rolled back."""
    client, dsn = registry
    x, y = sorted((_registered(client) for _ in range(2)), key=lambda r: str(r["id_number"]))
    z = _registered(client)["id_number"]
    settings = RegistrySettings(database_url="postgresql://unused/x", jurisdictions=HERE)
    registered_there = {**_person_body(z, "F"), "residence_division": THERE}
    unit = [
        _arrived_there(y["id_number"]),
        notification(HERE, "person.registered.v1", registered_there, source=THERE),
        _arrived_there(x["id_number"]),
    ]
    items = [
        _name_correction(x),
        {"kind": "person", "body": _person_body(person_id("M"), "M")},
        _name_correction(y),
    ]

    async def run() -> tuple[tuple[Any, Any], list[Any]]:
        holder = await asyncpg.connect(dsn)
        try:
            async with holder.transaction():
                await holder.execute(
                    "SELECT 1 FROM persons WHERE jurisdiction = $1 AND id_number = $2 FOR UPDATE", HERE, z
                )
                consumer = asyncio.create_task(_apply_unit(dsn, settings, unit))
                await lock_waiters(holder, 1)
                batch = asyncio.create_task(
                    asyncio.to_thread(client.post, "/v1/batches", json={"items": items})
                )
                await lock_waiters(holder, 2, unless=batch)
            answers = await asyncio.gather(consumer, batch, return_exceptions=True)
            rows = await holder.fetch(
                """SELECT p.name, count(m.id) AS arrivals FROM persons p
                     LEFT JOIN migrations m ON m.jurisdiction = p.jurisdiction AND m.id_number = p.id_number
                                           AND m.source_division = $2
                    WHERE p.jurisdiction = $1 AND p.id_number = ANY($3::text[])
                    GROUP BY p.id_number, p.name""",
                HERE,
                THERE,
                [x["id_number"], y["id_number"]],
            )
        finally:
            await holder.close()
        return answers, [(r["name"], r["arrivals"]) for r in rows]

    (consumed, answer), people = asyncio.run(run())
    assert not isinstance(consumed, BaseException), repr(consumed)
    assert _statuses(answer) == [201, 201, 201]
    assert people == [("更正", 1), ("更正", 1)]


def _new_person(number: str, sex: str = "F") -> dict[str, Any]:
    return {"kind": "person", "body": _person_body(number, sex)}


def test_two_batches_registering_two_new_people_in_opposite_orders_both_pass(
    registry: tuple[TestClient, str],
) -> None:
    """One batch registers X, dissolves a marriage, registers Y; another registers Y, then X. The
    marriage is held meanwhile: the first batch, X inserted, waits for it; the second inserts Y
    and waits for X's insert... and once the marriage is free the first waits for Y's: a deadlock
    on the unique index, no row to lock yet. Each new person's key locked first (an advisory lock
    in her row's place), the second batch waits for the first before its first item instead."""
    client, dsn = registry
    x, y = person_id("F"), person_id("M")
    m = _married(client)
    hold = (
        "SELECT 1 FROM marriages WHERE jurisdiction = $1 AND id = $2 FOR UPDATE",
        [HERE, m["marriage_id"]],
    )
    first = [_new_person(x), _dissolution(m), _new_person(y, "M")]
    second = [_new_person(y, "M"), _new_person(x)]
    one, two = _opposite_batches(client, dsn, hold, first, second)
    assert _statuses(one) == [201, 200, 201]
    assert _statuses(two) == [409, 409]


def test_a_batch_and_the_consumers_unit_of_work_registering_the_same_new_people_both_pass(
    registry: tuple[TestClient, str],
) -> None:
    """A registrar's batch registers X, dissolves a marriage, registers Y, while the consumer
    applies a counterpart's registrations of Y, then X, in one unit of work. The marriage is held
    meanwhile: the batch, X inserted, waits for it; the unit inserts Y and waits for X's insert,
    and the batch, the marriage freed, for Y's: a deadlock, the unit rolled back. The new
    people's keys locked first, the unit waits for the batch, then finds both on record."""
    client, dsn = registry
    x, y = person_id("F"), person_id("M")
    m = _married(client)
    settings = RegistrySettings(database_url="postgresql://unused/x", jurisdictions=HERE)
    unit = [
        notification(
            HERE, "person.registered.v1", {**_person_body(n, s), "residence_division": THERE}, source=THERE
        )
        for n, s in ((y, "M"), (x, "F"))
    ]
    items = [_new_person(x), _dissolution(m), _new_person(y, "M")]

    async def run() -> tuple[list[Any], int]:
        holder = await asyncpg.connect(dsn)
        try:
            async with holder.transaction():
                await holder.execute(
                    "SELECT 1 FROM marriages WHERE jurisdiction = $1 AND id = $2 FOR UPDATE",
                    HERE,
                    m["marriage_id"],
                )
                batch = asyncio.create_task(
                    asyncio.to_thread(client.post, "/v1/batches", json={"items": items})
                )
                await lock_waiters(holder, 1)
                consumer = asyncio.create_task(_apply_unit(dsn, settings, unit))
                await lock_waiters(holder, 2)
            answers = await asyncio.gather(batch, consumer, return_exceptions=True)
            held = await holder.fetchval(
                "SELECT count(*) FROM persons WHERE jurisdiction = $1 AND id_number = ANY($2::text[])",
                HERE,
                [x, y],
            )
        finally:
            await holder.close()
        return answers, held

    (answer, consumed), held = asyncio.run(run())
    assert not isinstance(consumed, BaseException), repr(consumed)
    assert _statuses(answer) == [201, 200, 201]
    assert held == 2


def _first_move(number: str, kind: str, way: tuple[str, str], when: str) -> dict[str, Any]:
    """A move of someone who may not be on record yet (then the move is her first record)."""
    move = {"kind": kind, "id_number": number, "from_division": way[0], "to_division": way[1],
            "migration_date": when, "name": "新来", "hukou_division": THERE}  # fmt: skip
    return {"kind": "migration", "body": move}


def test_two_batches_of_first_arrivals_in_opposite_orders_both_pass(
    registry: tuple[TestClient, str],
) -> None:
    """Two batches of moves only (one run each, the people first recorded in one statement, in
    the order sent): X, H, Y arrive in one, Y, X in the other. H's row is being inserted by
    another transaction meanwhile: the first batch, X inserted, waits for it; the second inserts
    Y and waits for X. That transaction rolled back, the first inserts H, then waits for Y: a
    deadlock. The run's lock of its people (``migrations.residences``) locks the keys of those
    not on record too, in key order: the second waits for the first before inserting anyone."""
    client, dsn = registry
    x, h, y = person_id("F"), person_id("F"), person_id("F")
    hold = (
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                                residence_division, source_division)
           VALUES ($1, $2, 'held', '占位', 'F', $3::text::date, $1, $1, $1)""",
        [HERE, h, f"{h[6:10]}-{h[10:12]}-{h[12:14]}"],
    )
    first = [_first_move(n, "arrived", (THERE, HERE), "2024-02-01") for n in (x, h, y)]
    second = [_first_move(n, "arrived", (THERE, HERE), "2024-03-01") for n in (y, x)]
    one, two = _opposite_batches(client, dsn, hold, first, second, keep=False)
    assert _statuses(one) == [201, 201, 201]
    # Judged once the first batch committed: each lives here already (arrival-needs-departure).
    assert _statuses(two) == [422, 422]
    rules = [r["problem"]["errors"][0]["rule"] for r in two.json()["results"]]
    assert rules == ["arrival-needs-departure"] * 2
