"""Corrections of a person's moves running at once, on a registry served in-process over a real
PostgreSQL: each takes her row before the move it changes, as recording a move does, so a batch
correcting two of her moves and a request correcting one of them queue up instead of deadlocking
(which PostgreSQL breaks by rolling one back: a 503 to retry)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from tests.helpers import in_process_registry, lock_waiters, person_id

HERE, THERE = "320412", "440703"
SECRET = "corrlock-secret"  # noqa: S105 - a throwaway credential of this test's own client


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "corrlock", HERE, SECRET) as (client, dsn):
        yield client, dsn


def _moved(client: TestClient) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A resident who left on 2024-01-10 and came back on 2024-06-01: her number and both moves."""
    number = person_id("F")
    body = {"id_number": number, "name": "更正", "sex": "F", "hukou_division": HERE,
            "birth_date": f"{number[6:10]}-{number[10:12]}-{number[12:14]}"}  # fmt: skip
    assert client.post("/v1/persons", json=body).status_code == 201
    made = []
    for kind, frm, to, when in (
        ("departed", HERE, THERE, "2024-01-10"),
        ("returned", THERE, HERE, "2024-06-01"),
    ):
        move = {
            "kind": kind,
            "id_number": number,
            "from_division": frm,
            "to_division": to,
            "migration_date": when,
        }
        r = client.post("/v1/migrations", json=move)
        assert r.status_code == 201, r.text
        made.append(r.json())
    return number, made[0], made[1]


def _correction(move: dict[str, Any], when: str) -> dict[str, Any]:
    return {"corrected_event_id": move["event_id"], "record_type": "migration",
            "record_id": move["migration_id"], "changes": {"migration_date": when},
            "reason": "mistyped at the counter"}  # fmt: skip


def test_a_batch_and_a_request_correcting_her_moves_at_once_both_pass(
    registry: tuple[TestClient, str],
) -> None:
    """A batch corrects her return's date, then her departure's; a request corrects her departure's
    at the same time. Her row is held meanwhile by another transaction (as a move of hers being
    recorded holds it), so both wait for it, the batch first: once it is free both are recorded,
    one after the other, and neither is answered 503."""
    client, dsn = registry

    async def run() -> tuple[Any, Any, str]:
        number, left, back = _moved(client)
        items = [
            {"kind": "correction", "body": _correction(back, "2024-06-02")},
            {"kind": "correction", "body": _correction(left, "2024-01-11")},
        ]
        holder = await asyncpg.connect(dsn)
        try:
            async with holder.transaction():
                await holder.execute(
                    "SELECT 1 FROM persons WHERE jurisdiction = $1 AND id_number = $2 FOR UPDATE",
                    HERE,
                    number,
                )
                batch = asyncio.create_task(
                    asyncio.to_thread(client.post, "/v1/batches", json={"items": items})
                )
                await lock_waiters(holder, 1)
                single = asyncio.create_task(
                    asyncio.to_thread(client.post, "/v1/corrections", json=_correction(left, "2024-01-12"))
                )
                await lock_waiters(holder, 2)
            # A deadlock raises here through the test client (a real client is answered 503).
            answers = await asyncio.gather(batch, single, return_exceptions=True)
            left_on = await holder.fetchval(
                "SELECT migration_date::text FROM migrations WHERE jurisdiction = $1 AND id = $2",
                HERE,
                left["migration_id"],
            )
        finally:
            await holder.close()
        return answers[0], answers[1], str(left_on)

    batch, single, left_on = asyncio.run(run())
    assert not isinstance(batch, BaseException), repr(batch)
    assert not isinstance(single, BaseException), repr(single)
    assert batch.status_code == 200, batch.text
    assert [r["status"] for r in batch.json()["results"]] == [201, 201], batch.text
    assert single.status_code == 201, single.text
    assert left_on in ("2024-01-11", "2024-01-12")
