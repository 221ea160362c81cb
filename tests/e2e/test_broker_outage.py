"""Writes go on while the broker is down; everything is delivered once it is back (empty)."""

from __future__ import annotations

import httpx
import pytest

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import Api, person_id, query, wait_until
from tests.stacks_ahead import StackSpec, stack_fixture

pytestmark = pytest.mark.e2e


outage_stack = stack_fixture("outage_stack", StackSpec("outage", db_prefix="outage_"))


def _birth_date(id_number: str) -> str:
    return f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"


def test_writes_during_a_broker_outage_are_all_delivered_after_it(outage_stack: Stack) -> None:
    origin = Api(outage_stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    people = [person_id("F") for _ in range(10)]
    for n in people:
        r = origin.post(
            "/v1/persons",
            {
                "id_number": n,
                "name": "赵敏",
                "sex": "F",
                "birth_date": _birth_date(n),
                "hukou_division": ORIGIN,
            },
        )
        assert r.status_code == 201, r.text

    assert outage_stack.broker is not None
    outage_stack.broker.stop()
    for n in people:
        r = origin.post(
            "/v1/migrations",
            {
                "kind": "departed",
                "id_number": n,
                "from_division": ORIGIN,
                "to_division": DESTINATION,
                "migration_date": "2025-06-01",
            },
        )
        assert r.status_code == 201, r.text  # the registry accepts writes with the broker down

    ready = httpx.get(outage_stack.service(f"registry-{ORIGIN}").url + "/readyz", timeout=5).json()
    assert ready["broker"].startswith("unavailable")
    assert ready["outbox_backlog"] >= len(people)

    outage_stack.broker.start()  # a memory-only broker: it comes back with no topics at all
    dest_db = outage_stack.service(f"registry-{DESTINATION}").dsn

    def all_arrived() -> bool:
        rows = query(dest_db, "SELECT id_number FROM persons WHERE id_number = ANY($1::text[])", people)
        return len(rows) == len(people)

    wait_until(all_arrived, timeout=60, interval=0.5)
    moves = query(
        dest_db,
        "SELECT id_number, count(*) AS n FROM migrations WHERE id_number = ANY($1::text[]) "
        "GROUP BY id_number",
        people,
    )
    assert sorted(r["n"] for r in moves) == [1] * len(people)  # each departure applied exactly once
    origin_db = outage_stack.service(f"registry-{ORIGIN}").dsn
    wait_until(lambda: not query(origin_db, "SELECT 1 FROM outbox WHERE published_at IS NULL"), timeout=10)
