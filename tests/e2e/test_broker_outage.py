"""Writes go on while the broker is down; everything is delivered once it is back (empty)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

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


def test_services_stopped_while_they_rejoin_their_groups_end_within_their_bound(outage_stack: Stack) -> None:
    """A broker back from an outage holds the members' group joins for seconds, and a stop then
    waits on their leaving (``docs/reliability.md``). Each service ends within uvicorn's 5 s for
    open connections plus its lifespan's 8 s bound (``shared.shutdown``), and its log says how:
    stopped, or the step it was in and what it still waited for."""
    assert outage_stack.broker is not None
    outage_stack.broker.stop()
    outage_stack.broker.start()
    time.sleep(1.0)  # the members are rejoining now
    running = [svc for svc in outage_stack.services if svc.process and svc.process.poll() is None]
    assert len(running) == len(outage_stack.services)
    started = time.monotonic()
    for svc in running:
        assert svc.process is not None
        svc.process.send_signal(signal.SIGTERM)
    took: dict[str, float] = {}
    for svc in running:
        assert svc.process is not None
        try:
            svc.process.wait(max(0.1, started + 20 - time.monotonic()))
        except subprocess.TimeoutExpired:
            svc.process.kill()
            raise AssertionError(f"{svc.name} did not end 20 s after SIGTERM") from None
        took[svc.name] = time.monotonic() - started
    assert max(took.values()) < 5 + 8 + 2, took

    for svc in running:
        lines = [
            json.loads(line)
            for line in (outage_stack.run_dir / "logs" / f"{svc.log_name}.log").read_text().splitlines()
            if line.startswith("{")
        ]
        last_stop = max(i for i, doc in enumerate(lines) if doc["msg"] == "service stopping")
        ends = [
            doc
            for doc in lines[last_stop:]
            if doc["msg"] in ("service stopped", "shutdown overran; closing the database connections")
        ]
        assert len(ends) == 1, (svc.name, ends)
        if ends[0]["msg"] != "service stopped":
            assert ends[0]["step"] and ends[0]["waiting"], (svc.name, ends[0])
