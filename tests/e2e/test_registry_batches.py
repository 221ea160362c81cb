"""``POST /v1/batches`` as a registrar system uses it, on the session stack (real HTTP, PostgreSQL, broker).

Mixed good and bad items: exactly the good ones are committed and reach the exchange, each bad
one is named with its field and rule. A retried batch with the same ``Idempotency-Key`` gets
the same answer and writes nothing. A batch whose database connection is killed mid-way leaves
nothing behind, answers 503, and succeeds when retried.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.e2e.test_readme_walkthrough import README, _run
from tests.e2e.test_registry_records import born, register
from tests.helpers import Api, medical_certificate, person_id, query, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def origin(stack: Stack) -> Api:
    return Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")


def person(number: str, name: str = "批量", **extra: Any) -> dict[str, Any]:
    sex = "F" if int(number[16]) % 2 == 0 else "M"
    body = {
        "id_number": number,
        "name": name,
        "sex": sex,
        "birth_date": born(number),
        "hukou_division": ORIGIN,
    }
    return {"kind": "person", "body": {**body, **extra}}


LAST_OUTBOX_ID = "SELECT coalesce(max(id), 0) AS n FROM outbox"
NEW_EVENTS = """SELECT event_id, event_type, convert_from(value, 'UTF8') AS value, published_at FROM outbox
                WHERE id > $1 AND event_type NOT LIKE 'exchange.feedback%' ORDER BY id"""
PERSONS = "SELECT id_number FROM persons WHERE id_number = ANY($1::text[])"


def last_outbox_id(db: str) -> int:
    return int(query(db, LAST_OUTBOX_ID)[0]["n"])


def new_events(db: str, after: int) -> list[asyncpg.Record]:
    return query(db, NEW_EVENTS, after)


def persons_named(db: str, numbers: list[str]) -> set[str]:
    return {r["id_number"] for r in query(db, PERSONS, numbers)}


def mixed_batch(known: str) -> tuple[list[dict[str, Any]], dict[int, tuple[int, str, str]], list[str]]:
    """Items, the refusals expected (index -> status, field, rule) and the good persons' numbers."""
    wife, husband, stranger = person_id("F"), person_id("M"), person_id("F")
    wrong_sex = person_id("M")
    birth = {
        "medical_certificate_number": medical_certificate(),
        "child_name": "批小宝",
        "child_sex": "F",
        "child_birth_date": "2025-06-01",
        "mother_id_number": wife,
        "father_id_number": husband,
    }
    items = [
        person(wife),  # 0
        {**person(wrong_sex), "body": {**person(wrong_sex)["body"], "sex": "F"}},  # 1: refused by a rule
        person(husband),  # 2
        {  # 3: sees item 0 in the same transaction
            "kind": "migration",
            "body": {
                "kind": "departed",
                "id_number": wife,
                "from_division": ORIGIN,
                "to_division": DESTINATION,
                "migration_date": "2025-02-01",
            },
        },
        person(known),  # 4: already on record (before the batch)
        {"kind": "birth", "body": {**birth, "mother_id_number": stranger}},  # 5: unknown mother
        {  # 6: marriage of items 0 and 2
            "kind": "marriage",
            "body": {
                "spouse_a_id_number": husband,
                "spouse_b_id_number": wife,
                "marriage_date": "2024-05-01",
            },
        },
        {"kind": "birth", "body": birth},  # 7
        {"kind": "adoption", "body": {}},  # 8: no such kind
        {
            "kind": "marriage_dissolution",
            "target": "not-a-uuid",
            "body": {"dissolution_date": "2025-01-01", "reason": "divorce"},
        },  # 9
        {
            "kind": "person",
            "body": {**person(stranger)["body"], "id_number": "110101199001011234"},
        },  # 10: bad check digit
        {"kind": "certificate", "body": {"holder_id_number": wife}},  # 11
        {
            "kind": "pregnancy",
            "target": str(uuid.uuid4()),
            "body": {"mother_id_number": wife},
        },  # 12: no target here
    ]
    refused = {
        1: (422, "sex", "sex-matches-id-number"),
        4: (409, "id_number", "no-duplicate"),
        5: (422, "mother_id_number", "person-must-exist"),
        8: (422, "kind", "batch-item-kind"),
        9: (422, "marriage_id", "uuid_parsing"),  # named as the single route names it
        10: (422, "id_number", "value_error"),  # as the single route names it
        12: (422, "target", "no-target"),
    }
    return items, refused, [wife, husband]


def test_a_mixed_batch_commits_and_publishes_exactly_the_good_items(stack: Stack, origin: Api) -> None:
    db, exchange_db = stack.service(f"registry-{ORIGIN}").dsn, stack.service("migrant_exchange").dsn
    known = register(origin, "F")
    items, refused, good = mixed_batch(known)
    before = last_outbox_id(db)
    r = origin.post("/v1/batches", {"items": items})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert [x["index"] for x in answer["results"]] == list(range(len(items)))
    assert (answer["accepted"], answer["rejected"]) == (len(items) - len(refused), len(refused))
    for result in answer["results"]:
        if result["index"] in refused:
            status, field, rule = refused[result["index"]]
            assert result["status"] == status and "resource" not in result, result
            assert result["problem"]["status"] == status, result
            assert (result["problem"]["errors"][0]["field"], result["problem"]["errors"][0]["rule"]) == (
                field,
                rule,
            )
        else:  # answered as the single route answers
            assert result["status"] == (201 if result["kind"] != "marriage_dissolution" else 200), result
            assert result["resource"]["event_id"], result
    for index, route in ((1, "/v1/persons"), (5, "/v1/births"), (10, "/v1/persons")):  # the same rules
        single = origin.post(route, items[index]["body"])
        assert (
            single.status_code == refused[index][0] and single.json() == answer["results"][index]["problem"]
        )
    certificate = answer["results"][11]["resource"]
    assert certificate["qr_svg"] == f"/v1/certificates/{certificate['certificate_number']}/qr.svg"

    # The good items' rows and events, and nothing of the bad ones.
    assert persons_named(
        db, [*good, items[1]["body"]["id_number"], items[5]["body"]["mother_id_number"]]
    ) == set(good)
    assert not query(
        db, "SELECT 1 FROM births WHERE mother_id_number = $1", items[5]["body"]["mother_id_number"]
    )
    events = new_events(db, before)
    types = sorted(e["event_type"] for e in events)
    assert types == sorted(
        [
            "person.registered.v1",
            "person.registered.v1",
            "migration.departed.v1",
            "marriage.registered.v1",
            "marriage.registered.v1",  # one per spouse's stream
            "birth.registered.v2",
            "certificate.issued.v1",
        ]
    ), types
    bad_numbers = [items[1]["body"]["id_number"], items[5]["body"]["mother_id_number"]]
    assert not [e for e in events if any(n in e["value"] for n in bad_numbers)]
    ids = {r["resource"]["event_id"] for r in answer["results"] if "resource" in r}
    assert ids <= {str(e["event_id"]) for e in events}

    # Published: the relay marked them sent and the exchange applied every one of them.
    event_ids = [e["event_id"] for e in events]
    wait_until(lambda: all(e["published_at"] for e in new_events(db, before)), timeout=10)
    applied = "SELECT DISTINCT event_id FROM inbox WHERE event_id = ANY($1::uuid[])"
    wait_until(lambda: len(query(exchange_db, applied, event_ids)) == len(event_ids), timeout=15)


def test_a_retried_batch_answers_the_same_and_writes_nothing(stack: Stack, origin: Api) -> None:
    db = stack.service(f"registry-{ORIGIN}").dsn
    items, _, good = mixed_batch(register(origin, "F"))
    key = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    first = origin.post("/v1/batches", {"items": items}, **key)
    assert first.status_code == 200, first.text
    wait_until(lambda: all(e["published_at"] for e in new_events(db, 0)[-20:]), timeout=10)
    before = last_outbox_id(db)
    again = origin.post("/v1/batches", {"items": items}, **key)
    assert again.status_code == 200 and again.content == first.content
    assert again.headers.get("idempotent-replayed") == "true"
    assert new_events(db, before) == []  # no event written, so none published
    assert persons_named(db, good) == set(good)
    other = origin.post("/v1/batches", {"items": items[:3]}, **key)
    assert other.status_code == 422 and other.json()["errors"][0]["rule"] == "idempotency-key-reuse"
    assert new_events(db, before) == []


def test_a_batch_over_the_limit_is_refused_whole(stack: Stack, origin: Api) -> None:
    db = stack.service(f"registry-{ORIGIN}").dsn
    before = last_outbox_id(db)
    items = [person(person_id("F")) for _ in range(1001)]
    r = origin.post("/v1/batches", {"items": items})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json", r.text
    assert (r.json()["errors"][0]["field"], r.json()["errors"][0]["rule"]) == ("items", "max-batch-items")
    assert new_events(db, before) == []
    r = origin.post("/v1/batches", {"items": []})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "items", r.text


async def lock_waiter(holder: asyncpg.Connection, within: float = 30.0) -> int:
    """The pid of a registry backend queued behind ``holder``'s row lock, once there is one.

    ``holder`` is inside the transaction that holds the lock, and in a transaction PostgreSQL
    shows ``pg_stat_activity``'s rows as they were at the first look (only the wait event is read
    live): a backend that connected since, such as a pool's new connection, would never appear.
    Each look discards that snapshot first."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        await holder.execute("SELECT pg_stat_clear_snapshot()")
        pid = await holder.fetchval(
            """SELECT pid FROM pg_stat_activity WHERE datname = current_database()
                 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() LIMIT 1"""
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.025)
    # What the registry's backends were doing instead, for whoever reads the failure.
    await holder.execute("SELECT pg_stat_clear_snapshot()")
    backends = await holder.fetch(
        """SELECT state, wait_event_type, wait_event, left(query, 120) AS query
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"""
    )
    raise AssertionError(
        f"no request waited on the locked row within {within} s: {[dict(b) for b in backends]}"
    )


async def terminate_when_blocked(holder: asyncpg.Connection) -> int:
    """Wait until a registry backend queues behind ``holder``'s row lock, then kill its connection."""
    pid = await lock_waiter(holder)
    assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)
    return pid


async def test_a_batch_whose_connection_dies_mid_way_writes_nothing_and_succeeds_on_retry(
    stack: Stack, origin: Api
) -> None:
    db = stack.service(f"registry-{ORIGIN}").dsn
    blocked = register(origin, "F")  # her departure, item 150, will wait for our lock on her row
    first, last = [person_id("F") for _ in range(150)], [person_id("M") for _ in range(20)]
    departure = {
        "kind": "departed",
        "id_number": blocked,
        "from_division": ORIGIN,
        "to_division": DESTINATION,
        "migration_date": "2025-02-01",
    }
    items = [
        *(person(n) for n in first),
        {"kind": "migration", "body": departure},
        *(person(n) for n in last),
    ]
    key = {
        "Idempotency-Key": f"batch-fault-{uuid.uuid4()}",
        "Authorization": f"Bearer {stack.token(f'reg-{ORIGIN}')}",
    }
    holder = await asyncpg.connect(db)
    try:
        before = await holder.fetchval(LAST_OUTBOX_ID)
        async with httpx.AsyncClient(base_url=origin.base, timeout=30) as http:
            lock = holder.transaction()
            await lock.start()
            await holder.execute("SELECT 1 FROM persons WHERE id_number = $1 FOR UPDATE", blocked)
            request = asyncio.create_task(http.post("/v1/batches", json={"items": items}, headers=key))
            await terminate_when_blocked(holder)
            await lock.rollback()
            r = await request
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json" and "Retry-After" in r.headers
            # Nothing half-written: none of the 150 persons recorded before the fault, no event.
            assert await holder.fetch(PERSONS, first + last) == []
            assert await holder.fetch(NEW_EVENTS, before) == []

        # A new connection: the server closes the one whose request met the fault.
        async with httpx.AsyncClient(base_url=origin.base, timeout=30) as http:
            again = await http.post("/v1/batches", json={"items": items}, headers=key)
            assert again.status_code == 200, again.text
            assert again.json()["accepted"] == len(items) and again.json()["rejected"] == 0
        assert len(await holder.fetch(PERSONS, first + last)) == len(first + last)
        # Each once: one event per person and one for the departure.
        assert len(await holder.fetch(NEW_EVENTS, before)) == len(items)
    finally:
        await holder.close()


def test_the_readme_batch_example_works_as_written(stack: Stack, tmp_path: Path) -> None:
    """The README's curl example, pasted as is against the session stack, prints what it says."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Batched submission for registrar systems") :]
    block = re.findall(r"```sh\n(.*?)```", section, re.S)[0]
    printed = [line.removeprefix("# ") for line in block.splitlines() if line.startswith("# {")]
    assert _run(stack, tmp_path, block).split() == printed
