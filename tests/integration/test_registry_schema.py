"""The registry's schema: migrations re-run safely, and constraints make illegal states unrepresentable."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import asyncpg
import pytest

from shared.db import migrate
from tests.helpers import person_id

MIGRATIONS = Path("services/registry/migrations")
HERE = "320412"


async def _schema(dsn: str) -> asyncpg.Connection:
    assert await migrate(dsn, "registry", MIGRATIONS)
    assert await migrate(dsn, "registry", MIGRATIONS) == []  # numbered and recorded: nothing twice
    conn = await asyncpg.connect(dsn)
    for path in sorted(MIGRATIONS.glob("0002_*.sql")):  # and the SQL itself is re-runnable
        await conn.execute(path.read_text())
    return conn


async def _person(conn: asyncpg.Connection, sex: str) -> str:
    number = person_id(sex)
    await conn.execute(
        """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date, hukou_division,
                                residence_division, source_division)
           VALUES ($1, $2, md5($2), '约束', $3, '1990-01-01', $1, $1, $1)""",
        HERE,
        number,
        sex,
    )
    return number


async def _marry(conn: asyncpg.Connection, a: str, b: str) -> uuid.UUID:
    marriage = uuid.uuid4()
    await conn.execute(
        """INSERT INTO marriages (id, jurisdiction, spouse_a_id_number, spouse_b_id_number, marriage_date,
                                  source_division) VALUES ($1, $2, $3, $4, '2020-01-01', $2)""",
        marriage,
        HERE,
        a,
        b,
    )
    return marriage


def test_constraints_refuse_illegal_states_even_past_the_api(fresh_db: str) -> None:
    async def run() -> None:
        conn = await _schema(fresh_db)
        try:
            husband, wife, other = (
                await _person(conn, "M"),
                await _person(conn, "F"),
                await _person(conn, "F"),
            )
            first = await _marry(conn, husband, wife)
            with pytest.raises(asyncpg.UniqueViolationError, match="marriage_spouses_one_active"):
                await _marry(conn, other, husband)  # married twice at once, either side
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(
                    "UPDATE marriages SET dissolution_date = '2019-01-01', dissolution_reason = 'divorce' WHERE id = $1",
                    first,
                )
            await conn.execute(
                "UPDATE marriages SET dissolution_date = '2021-01-01', dissolution_reason = 'divorce' WHERE id = $1",
                first,
            )
            await _marry(conn, other, husband)  # after the dissolution it is allowed

            birth = """INSERT INTO births (id, jurisdiction, medical_certificate_number, child_name, child_sex,
                           child_birth_date, mother_id_number, birth_order, birth_division, source_division)
                       VALUES ($1, $2, $3, '约束', 'F', '2022-01-01', $4, $5, $2, $2)"""
            await conn.execute(birth, uuid.uuid4(), HERE, "O123456789", wife, 1)
            with pytest.raises(asyncpg.UniqueViolationError):  # one birth per medical certificate
                await conn.execute(birth, uuid.uuid4(), HERE, "O123456789", other, 1)
            with pytest.raises(asyncpg.UniqueViolationError):  # one child per birth order
                await conn.execute(birth, uuid.uuid4(), HERE, "O987654321", wife, 1)

            pregnancy = """INSERT INTO pregnancies (id, jurisdiction, mother_id_number, registered_in, registered_on,
                               source_division) VALUES ($1, $2, $3, $2, $4, $2)"""
            await conn.execute(pregnancy, uuid.uuid4(), HERE, wife, dt.date(2023, 1, 1))
            with pytest.raises(asyncpg.UniqueViolationError):  # one open pregnancy per mother
                await conn.execute(pregnancy, uuid.uuid4(), HERE, wife, dt.date(2023, 2, 1))
            with pytest.raises(asyncpg.CheckViolationError):  # closed needs an outcome
                await conn.execute(
                    "UPDATE pregnancies SET closed_on = '2023-03-01' WHERE mother_id_number = $1", wife
                )
            indexes = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
            assert {
                "persons_subject",
                "migrations_person",
                "births_mother",
                "marriage_spouses_person",
                "pregnancies_mother",
                "corrections_record",
                "certificates_holder",
            } <= indexes
        finally:
            await conn.close()

    asyncio.run(run())
