"""Corrections that would contradict a person's moves, on a registry served in-process over a real
PostgreSQL: a move's date keeps its place among her moves, and the residence of a person who moved
is where her last move took her; and a counterpart's person re-sent with another residence, applied
as the consumer applies it, is a conflict unless her moves here say where she lives."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from services.registry.adapters import migrations as migration_records
from services.registry.adapters.persons import person_history
from services.registry.service_layer.counterpart import apply_notification, apply_notifications
from services.registry.settings import RegistrySettings
from shared.db import create_pool, migrate
from tests.helpers import in_process_registry, notification, person_id, query

HERE, THERE, ELSEWHERE = "320412", "440703", "110101"
SECRET = "corrmoves-secret"  # noqa: S105 - a throwaway credential of this test's own client


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "corrmoves", HERE, SECRET) as (client, dsn):
        yield client, dsn


def _resident(client: TestClient) -> str:
    number = person_id("F")
    body = {"id_number": number, "name": "迁移", "sex": "F", "hukou_division": HERE,
            "birth_date": f"{number[6:10]}-{number[10:12]}-{number[12:14]}"}  # fmt: skip
    r = client.post("/v1/persons", json=body)
    assert r.status_code == 201, r.text
    return number


def _move_body(number: str, kind: str, frm: str, to: str, when: str) -> dict[str, str]:
    return {
        "kind": kind,
        "id_number": number,
        "from_division": frm,
        "to_division": to,
        "migration_date": when,
    }


def _move(client: TestClient, number: str, kind: str, frm: str, to: str, when: str) -> dict[str, Any]:
    r = client.post("/v1/migrations", json=_move_body(number, kind, frm, to, when))
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    return made


def _correction(event_id: str, record_type: str, record_id: str, **changes: str) -> dict[str, Any]:
    return {"corrected_event_id": event_id, "record_type": record_type, "record_id": record_id,
            "changes": changes, "reason": "mistyped at the counter"}  # fmt: skip


def _correct(client: TestClient, event_id: str, record_type: str, record_id: str, **changes: str) -> Any:
    return client.post("/v1/corrections", json=_correction(event_id, record_type, record_id, **changes))


def _refused(r: Any, field: str, rule: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    error = r.json()["errors"][0]
    assert (error["field"], error["rule"]) == (field, rule), r.text


def test_a_moves_date_is_corrected_only_within_the_moves_around_it(registry: tuple[TestClient, str]) -> None:
    """A departure corrected to after her return, or a return to before her departure, is refused
    as the move route refuses a move before the last one; within them the date is corrected."""
    client, dsn = registry
    number = _resident(client)
    left = _move(client, number, "departed", HERE, THERE, "2024-01-10")
    back = _move(client, number, "returned", THERE, HERE, "2024-06-01")
    moves = [(left, "2024-09-01"), (back, "2023-12-01")]
    for move, when in moves:
        r = _correct(client, move["event_id"], "migration", move["migration_id"], migration_date=when)
        _refused(r, "changes.migration_date", "moves-in-date-order")
    item = _correction(left["event_id"], "migration", left["migration_id"], migration_date="2024-06-02")
    batch = client.post(  # a batch's item is judged by the same rule
        "/v1/batches", json={"items": [{"kind": "correction", "body": item}]}
    ).json()["results"][0]
    assert batch["status"] == 422, batch
    error = batch["problem"]["errors"][0]
    assert (error["field"], error["rule"]) == ("changes.migration_date", "moves-in-date-order")
    kept = query(
        dsn, "SELECT migration_date::text AS d FROM migrations WHERE id_number = $1 ORDER BY 1", number
    )
    assert [r["d"] for r in kept] == ["2024-01-10", "2024-06-01"]
    for move, when in ((left, "2024-06-01"), (back, "2024-06-01"), (back, "2024-07-01")):
        r = _correct(client, move["event_id"], "migration", move["migration_id"], migration_date=when)
        assert r.status_code == 201, r.text
    lives = query(dsn, "SELECT residence_division FROM persons WHERE id_number = $1", number)
    assert lives[0]["residence_division"] == HERE


def test_moves_recorded_together_on_one_day_keep_the_order_sent(registry: tuple[TestClient, str]) -> None:
    """Two moves of hers recorded in one batch on the same day are ordered as sent: the first is
    corrected to an earlier day and the second to a later one, but neither across the other, which
    would make the other one her last move without her residence following."""
    client, dsn = registry
    number = _resident(client)
    moves = (("departed", HERE, THERE), ("returned", THERE, HERE))
    items = [{"kind": "migration", "body": _move_body(number, *move, "2024-03-01")} for move in moves]
    r = client.post("/v1/batches", json={"items": items})
    assert r.json()["accepted"] == 2, r.text
    left, back = [result["resource"] for result in r.json()["results"]]
    for made, when in ((left, "2024-03-02"), (back, "2024-02-29")):
        refused = _correct(client, made["event_id"], "migration", made["migration_id"], migration_date=when)
        _refused(refused, "changes.migration_date", "moves-in-date-order")
    for made, when in ((left, "2024-02-01"), (back, "2024-04-01")):
        r = _correct(client, made["event_id"], "migration", made["migration_id"], migration_date=when)
        assert r.status_code == 201, r.text
    lives = query(dsn, "SELECT residence_division FROM persons WHERE id_number = $1", number)
    assert lives[0]["residence_division"] == HERE


def test_moves_recorded_together_keep_the_order_sent_when_corrected_onto_one_day(
    registry: tuple[TestClient, str],
) -> None:
    """Her departure and return recorded in one batch, the departure's date then corrected onto the
    return's day: read back, the departure still comes first and the return is her last move
    (the batch's order, not where PostgreSQL happened to keep the corrected row), so her residence
    is corrected to where the return took her, and the return is not corrected before the
    departure."""
    client, dsn = registry
    number = _resident(client)
    moves = (("departed", HERE, THERE, "2024-02-01"), ("returned", THERE, HERE, "2024-03-01"))
    items = [{"kind": "migration", "body": _move_body(number, *move)} for move in moves]
    r = client.post("/v1/batches", json={"items": items})
    assert r.json()["accepted"] == 2, r.text
    left, back = [result["resource"] for result in r.json()["results"]]
    r = _correct(client, left["event_id"], "migration", left["migration_id"], migration_date="2024-03-01")
    assert r.status_code == 201, r.text
    read = client.get(f"/v1/persons/{number}", params={"purpose": "registration"})
    assert read.status_code == 200, read.text
    history = [(m["kind"], m["migration_date"]) for m in read.json()["migrations"]]
    assert history == [("departed", "2024-03-01"), ("returned", "2024-03-01")]
    registered = query(dsn, "SELECT event_id FROM persons WHERE id_number = $1", number)[0]["event_id"]
    r = _correct(client, str(registered), "person", number, residence_division=HERE)
    assert r.status_code == 201, r.text
    r = _correct(client, back["event_id"], "migration", back["migration_id"], migration_date="2024-02-15")
    _refused(r, "changes.migration_date", "moves-in-date-order")


def test_a_residence_is_corrected_only_where_no_move_says_otherwise(registry: tuple[TestClient, str]) -> None:
    """Her residence corrected against her last move is refused; without moves it is corrected."""
    client, dsn = registry
    moved, stayed = _resident(client), _resident(client)
    _move(client, moved, "departed", HERE, THERE, "2024-01-10")
    events = {
        n: str(query(dsn, "SELECT event_id FROM persons WHERE id_number = $1", n)[0]["event_id"])
        for n in (moved, stayed)
    }
    for residence in (HERE, ELSEWHERE):
        r = _correct(client, events[moved], "person", moved, residence_division=residence)
        _refused(r, "changes.residence_division", "residence-follows-last-move")
    lives = query(dsn, "SELECT residence_division FROM persons WHERE id_number = $1", moved)
    assert lives[0]["residence_division"] == THERE
    assert _correct(client, events[moved], "person", moved, residence_division=THERE).status_code == 201
    r = _correct(client, events[stayed], "person", stayed, residence_division=ELSEWHERE)
    assert r.status_code == 201, r.text


def _registered(number: str, residence: str) -> dict[str, Any]:
    born = f"{number[6:10]}-{number[10:12]}-{number[12:14]}"
    return {"id_number": number, "name": "复发", "sex": "F", "birth_date": born,
            "hukou_division": THERE, "residence_division": residence}  # fmt: skip


def test_a_resent_person_with_another_residence_is_a_conflict_unless_her_moves_say(fresh_db: str) -> None:
    """A counterpart's person held here and sent again with another residence is answered
    ``conflict`` naming residence_division (as a re-sent move or marriage with other details is),
    and ours is kept; where her moves here say where she lives, the registration's residence is
    older news than they are, and is not held against ours."""

    async def run() -> list[dict[str, Any]]:
        await migrate(fresh_db, "registry", Path("services/registry/migrations"))
        pool = await create_pool(fresh_db, min_size=1, max_size=1)
        settings = RegistrySettings(database_url=fresh_db, jurisdictions=HERE)
        still, moved = person_id("F"), person_id("F")
        arrival = {"migration_id": str(uuid.uuid4()), "id_number": moved, "name": "复发",
                     "hukou_division": THERE, "from_division": HERE, "to_division": ELSEWHERE,
                     "migration_date": "2025-01-01"}  # fmt: skip
        sent = [
            ("person.registered.v1", _registered(still, HERE), THERE),
            ("person.registered.v1", _registered(still, ELSEWHERE), THERE),
            ("person.registered.v1", _registered(moved, HERE), THERE),
            ("migration.arrived.v1", arrival, ELSEWHERE),
            ("person.registered.v1", _registered(moved, HERE), THERE),
        ]
        try:
            async with pool.acquire() as conn:
                for event_type, payload, source in sent:
                    event = notification(HERE, event_type, payload, source)
                    async with conn.transaction():
                        await apply_notification(conn, settings, event)
                feedback = [
                    orjson.loads(r["value"])["data"]
                    for r in await conn.fetch(
                        "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id"
                    )
                ]
                lives = await conn.fetchval(
                    "SELECT residence_division FROM persons WHERE id_number = $1", still
                )
        finally:
            await pool.close()
        assert lives == HERE
        return feedback

    feedback = asyncio.run(run())
    assert [f["outcome"] for f in feedback] == ["applied", "conflict", "applied", "applied", "applied"]
    assert feedback[1]["conflicts"] == [{"field": "residence_division", "ours": HERE, "theirs": ELSEWHERE}]


def test_notified_moves_applied_together_keep_the_order_produced(fresh_db: str) -> None:
    """Her arrival at THERE and her departure from THERE to ELSEWHERE, applied in one unit of
    work as the consumer applies a batch, THERE then correcting the arrival's date onto the
    departure's day: her moves here still read arrival then departure, and the last of them,
    which her residence follows, is the departure to ELSEWHERE."""

    def move(kind: str, frm: str, to: str, when: str) -> dict[str, Any]:
        return {"migration_id": str(uuid.uuid4()), "id_number": number, "name": "迁移",
                "hukou_division": HERE, "from_division": frm, "to_division": to,
                "migration_date": when}  # fmt: skip

    async def run() -> tuple[list[tuple[str, str]], Any, str]:
        await migrate(fresh_db, "registry", Path("services/registry/migrations"))
        pool = await create_pool(fresh_db, min_size=1, max_size=1)
        settings = RegistrySettings(database_url=fresh_db, jurisdictions=HERE)
        arrival = move("arrived", HERE, THERE, "2024-02-01")
        together = [
            notification(HERE, "migration.arrived.v1", arrival, THERE),
            notification(
                HERE, "migration.departed.v1", move("departed", THERE, ELSEWHERE, "2024-03-01"), THERE
            ),
        ]
        correction = {"correction_id": str(uuid.uuid4()), "corrected_event_id": str(uuid.uuid4()),
                      "record_type": "migration", "record_id": arrival["migration_id"],
                      "changes": {"migration_date": "2024-03-01"}, "reason": "mistyped at the counter"}  # fmt: skip
        try:
            async with pool.acquire() as conn:
                async with conn.transaction():
                    await apply_notifications(conn, settings, together)
                async with conn.transaction():
                    await apply_notification(
                        conn, settings, notification(HERE, "record.corrected.v1", correction, THERE)
                    )
                history = await person_history(conn, HERE, number)
                known = await migration_records.residence(conn, HERE, number)
                feedback = await conn.fetch(
                    "SELECT value FROM outbox WHERE event_type LIKE 'exchange.feedback%' ORDER BY id"
                )
        finally:
            await pool.close()
        answers = [orjson.loads(r["value"])["data"] for r in feedback]
        assert answers[-1]["outcome"] == "applied", answers[-1]
        moves = [(m["kind"], str(m["migration_date"])) for m in history["migrations"]]
        return moves, known, str(known.residence_division if known else None)

    number = person_id("F")
    moves, known, lives = asyncio.run(run())
    assert moves == [("arrived", "2024-03-01"), ("departed", "2024-03-01")]
    assert known is not None and (known.last_move_kind, known.last_move_to) == ("departed", ELSEWHERE)
    assert lives == ELSEWHERE
