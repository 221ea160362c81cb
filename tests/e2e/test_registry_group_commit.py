"""Single moves sent at once are group-committed, each answered as if alone (session stack: real HTTP,
PostgreSQL, broker).

Concurrent ``POST /v1/migrations`` share transactions: each request gets its own record or its own
refusal, each event carries its own request's trace, and the counterpart applies every one of
them. A group whose database connection dies before its commit leaves nothing behind, and each of
its requests is then recorded alone, once.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.e2e.test_registry_batches import lock_waiter, terminate_when_blocked
from tests.e2e.test_registry_records import register
from tests.helpers import Api, person_id, query, wait_until

pytestmark = pytest.mark.e2e

EVENTS = """SELECT event_id, xmin::text AS tx, headers->>'traceparent' AS tp FROM outbox
            WHERE event_id = ANY($1::uuid[])"""
MOVES = "SELECT id_number, count(*) AS n FROM migrations WHERE id_number = ANY($1::text[]) GROUP BY id_number"


def arrival(number: str) -> dict[str, Any]:
    """A first record at the destination: she arrives from her place of household registration."""
    return {
        "kind": "arrived",
        "id_number": number,
        "from_division": ORIGIN,
        "to_division": DESTINATION,
        "migration_date": "2025-03-01",
        "name": "并发",
        "hukou_division": ORIGIN,
    }


def departure(number: str) -> dict[str, Any]:
    return {
        "kind": "departed",
        "id_number": number,
        "from_division": ORIGIN,
        "to_division": DESTINATION,
        "migration_date": "2025-03-01",
    }


async def _post_all(api: Api, token: str, bodies: list[dict[str, Any]]) -> list[tuple[str, httpx.Response]]:
    """POST every move at once, each with a trace of its own: (trace id, answer) in order."""
    traces = [secrets.token_hex(16) for _ in bodies]
    async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    "/v1/migrations",
                    json=body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "traceparent": f"00-{trace}-{secrets.token_hex(8)}-01",
                    },
                )
                for body, trace in zip(bodies, traces, strict=True)
            )
        )
    return list(zip(traces, answers, strict=True))


def test_concurrent_moves_share_commits_and_are_each_answered_and_applied_as_alone(stack: Stack) -> None:
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    db, origin_db = stack.service(f"registry-{DESTINATION}").dsn, stack.service(f"registry-{ORIGIN}").dsn
    arriving = [person_id("F") for _ in range(40)]
    wrong_end = person_id("M")  # an arrival at the origin cannot be recorded at the destination
    nameless = person_id("F")  # a first record here needs her name and place of household registration
    bodies = [arrival(n) for n in arriving[:20]]
    bodies += [{**arrival(wrong_end), "to_division": ORIGIN, "from_division": DESTINATION}]
    bodies += [{**arrival(nameless), "name": None}]
    bodies += [arrival(n) for n in arriving[20:]]
    answered = asyncio.run(_post_all(dest, stack.token(f"reg-{DESTINATION}"), bodies))

    good = [
        (trace, r) for (trace, r), body in zip(answered, bodies, strict=True) if body["id_number"] in arriving
    ]
    for _, r in good:
        assert r.status_code == 201, r.text
    assert [r.json()["id_number"] for _, r in good] == arriving  # each request its own record
    # Each refusal is the one the request gets alone, naming its field and rule.
    for number, rule in (
        (wrong_end, "arrival-recorded-at-destination"),
        (nameless, "first-record-needs-identity"),
    ):
        (r,) = [r for (_, r), body in zip(answered, bodies, strict=True) if body["id_number"] == number]
        alone = dest.post("/v1/migrations", next(b for b in bodies if b["id_number"] == number))
        assert r.headers["content-type"] == alone.headers["content-type"] == "application/problem+json"
        assert r.status_code == alone.status_code and r.json()["errors"] == alone.json()["errors"], r.text
        assert r.json()["errors"][0]["rule"] == rule and r.json()["errors"][0]["field"]
    assert (
        query(db, "SELECT id_number FROM persons WHERE id_number = ANY($1::text[])", [wrong_end, nameless])
        == []
    )

    events = {r["event_id"]: r for r in query(db, EVENTS, [uuid.UUID(r.json()["event_id"]) for _, r in good])}
    # Each event carries its own request's trace, though requests shared a transaction ...
    for trace, r in good:
        assert events[uuid.UUID(r.json()["event_id"])]["tp"].split("-")[1] == trace
    # ... and they did share: fewer transactions than requests.
    assert len({e["tx"] for e in events.values()}) < len(good)
    # The far side: the origin registry applied every move (she lives at the destination now).
    wait_until(
        lambda: (
            len(
                query(
                    origin_db,
                    "SELECT 1 FROM persons WHERE id_number = ANY($1::text[]) AND residence_division = $2",
                    arriving,
                    DESTINATION,
                )
            )
            == len(arriving)
        ),
        timeout=30,
    )


def _state(request: asyncio.Task[httpx.Response]) -> object:
    if not request.done():
        return "open"
    if request.exception() is not None:
        return repr(request.exception())
    return (request.result().status_code, request.result().text[:200])


async def _group_dies(stack: Stack, plug: str, blocked: str, others: list[str]) -> list[httpx.Response]:
    """Departures from the origin while we hold ``plug``'s and ``blocked``'s rows. ``plug``'s takes the
    group commit's one slot and waits, so the ``others``' and ``blocked``'s gather into the next
    group; once the plug is let through, that group waits on ``blocked``'s row, and its connection
    is killed; then ``blocked`` is let through too. The answers, plug's first, ``blocked``'s last."""
    registry = stack.service(f"registry-{ORIGIN}")
    plug_holder, holder = await asyncpg.connect(registry.dsn), await asyncpg.connect(registry.dsn)
    headers = {"Authorization": f"Bearer {stack.token(f'reg-{ORIGIN}')}"}
    try:
        async with httpx.AsyncClient(base_url=registry.url, timeout=30) as http:

            def post(number: str) -> asyncio.Task[httpx.Response]:
                return asyncio.create_task(
                    http.post("/v1/migrations", json=departure(number), headers=headers)
                )

            plug_lock, lock = plug_holder.transaction(), holder.transaction()
            await plug_lock.start()
            await lock.start()
            await plug_holder.execute("SELECT 1 FROM persons WHERE id_number = $1 FOR UPDATE", plug)
            await holder.execute("SELECT 1 FROM persons WHERE id_number = $1 FOR UPDATE", blocked)
            first = post(plug)
            await lock_waiter(holder)  # the plug's group holds the slot
            rest = [post(n) for n in [*others, blocked]]
            await asyncio.sleep(1.0)  # every request above has reached the registry and queued
            await plug_lock.rollback()
            answers = [await first]  # the plug's group committed: the next one starts
            try:
                await terminate_when_blocked(holder)
            except AssertionError as e:  # say where the requests were: answered already, or not
                states = [_state(r) for r in rest]
                raise AssertionError(f"{e}; the other requests: {states}") from e
            await lock.rollback()
            return answers + [await r for r in rest]
    finally:
        await plug_holder.close()
        await holder.close()


def test_a_group_whose_connection_dies_before_its_commit_records_each_request_alone_once(
    stack: Stack,
) -> None:
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    db = stack.service(f"registry-{ORIGIN}").dsn
    plug, blocked, *others = [register(origin, "F") for _ in range(22)]
    answers = asyncio.run(_group_dies(stack, plug, blocked, others))

    for r in answers:
        assert r.status_code == 201, r.text
    movers = [plug, *others, blocked]
    assert [r.json()["id_number"] for r in answers] == movers
    # Once each: the killed group left nothing, and each of its requests was recorded alone.
    assert {r["id_number"]: r["n"] for r in query(db, MOVES, movers)} == dict.fromkeys(movers, 1)
    # One departure event each, the one answered: none left behind by the killed group.
    departed = query(
        db,
        """SELECT event_id FROM outbox WHERE event_type = 'migration.departed.v1'
             AND key IN (SELECT key FROM outbox WHERE event_id = ANY($1::uuid[]))""",
        [uuid.UUID(r.json()["event_id"]) for r in answers],
    )
    assert sorted(str(r["event_id"]) for r in departed) == sorted(r.json()["event_id"] for r in answers)
