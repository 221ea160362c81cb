"""A writer of a person's moves that waits for her row reads the moves written by the one it
waited for (real PostgreSQL, two connections). Every writer of moves locks her row before it
reads where she lives and her last move: a read in the locking statement itself would take the
moves from before the wait (PostgreSQL re-reads only the locked row then), and judge the next
move against a last move that is no longer the last."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import pytest
from fastapi.testclient import TestClient

from devstack.embedded import EmbeddedPostgres
from services.registry.adapters import migrations as repo
from services.registry.adapters.records import Made
from services.registry.domain.migrations import Residence
from tests.helpers import in_process_registry, person_id

HERE = "440703"
ELSEWHERE = "320412"
SECRET = "move-lock-secret"  # noqa: S105 - a throwaway credential of this test's own client


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "movelock", HERE, SECRET) as (client, dsn):
        yield client, dsn


def _one(jurisdiction: str, number: str) -> Callable[[asyncpg.Connection], Awaitable[Residence | None]]:
    return lambda conn: repo.residence(conn, jurisdiction, number)


def _many(jurisdiction: str, number: str) -> Callable[[asyncpg.Connection], Awaitable[Residence | None]]:
    async def read(conn: asyncpg.Connection) -> Residence | None:
        return (await repo.residences(conn, [(jurisdiction, number)])).get((jurisdiction, number))

    return read


@pytest.mark.parametrize("read", [_one, _many], ids=["one person", "a batch"])
def test_a_move_written_while_waiting_for_her_row_is_seen(
    registry: tuple[TestClient, str],
    read: Callable[[str, str], Callable[[asyncpg.Connection], Awaitable[Residence | None]]],
) -> None:
    client, dsn = registry
    number = person_id("F", dt.date(1990, 1, 1))
    person = {"id_number": number, "name": "锁小红", "sex": "F", "birth_date": "1990-01-01",
              "hukou_division": HERE}  # fmt: skip
    assert client.post("/v1/persons", json=person).status_code == 201
    moved_on = dt.date(2026, 3, 1)

    async def run() -> Residence | None:
        first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            writing = first.transaction()
            await writing.start()
            assert (await read(HERE, number)(first)) is not None  # her row locked by the first writer
            move = {"migration_id": uuid.uuid4(), "id_number": number, "from_division": HERE,
                    "to_division": ELSEWHERE, "migration_date": moved_on}  # fmt: skip
            assert await repo.insert_migration(first, HERE, move, "departed", Made(HERE))
            async with second.transaction():
                waiting = asyncio.ensure_future(read(HERE, number)(second))
                await asyncio.sleep(0.5)
                assert not waiting.done(), "the second writer did not wait for her row"
                await writing.commit()
                return await waiting
        finally:
            await first.close()
            await second.close()

    known = asyncio.run(run())
    assert known is not None
    assert (known.last_move_date, known.last_move_to) == (moved_on, ELSEWHERE)
