"""Random sequences of valid and invalid writes never leave the registry in an illegal state.

Hypothesis drives a state machine of registrar actions (people, marriages and their end, moves,
pregnancies and their closure, births, corrections) against the real registry app on a real
PostgreSQL database. After every step: the records satisfy every rule, an accepted write
published events, and a refused write published nothing and changed nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from devstack.embedded import EmbeddedPostgres
from tests.helpers import in_process_registry, medical_certificate, person_id

HERE, ELSEWHERE = "320412", "440703"
SECRET = "property-test-secret"  # noqa: S105 - a throwaway credential of this test's own client
TODAY = dt.date.today()

# Every rule of the records as one query: each row returned names a broken rule.
ILLEGAL_STATES = """
SELECT 'two active marriages' AS broken FROM (
    SELECT p, count(*) FROM (
        SELECT spouse_a_id_number AS p FROM marriages WHERE dissolution_date IS NULL
        UNION ALL SELECT spouse_b_id_number FROM marriages WHERE dissolution_date IS NULL) x
    GROUP BY p HAVING count(*) > 1) y
UNION ALL SELECT 'spouse not on record' FROM marriages m WHERE NOT EXISTS
    (SELECT 1 FROM persons p WHERE p.jurisdiction = m.jurisdiction AND p.id_number IN (m.spouse_a_id_number))
    OR NOT EXISTS
    (SELECT 1 FROM persons p WHERE p.jurisdiction = m.jurisdiction AND p.id_number IN (m.spouse_b_id_number))
UNION ALL SELECT 'under marriage age' FROM marriages m JOIN persons p
    ON p.jurisdiction = m.jurisdiction AND p.id_number IN (m.spouse_a_id_number, m.spouse_b_id_number)
    WHERE m.marriage_date < p.birth_date + make_interval(years => CASE p.sex WHEN 'M' THEN 22 ELSE 20 END)
UNION ALL SELECT 'overlapping marriages' FROM marriages m1 JOIN marriages m2 ON m1.id < m2.id
    AND m1.jurisdiction = m2.jurisdiction
    AND ARRAY[m1.spouse_a_id_number, m1.spouse_b_id_number] && ARRAY[m2.spouse_a_id_number, m2.spouse_b_id_number]
    WHERE daterange(m1.marriage_date, m1.dissolution_date, '[)') && daterange(m2.marriage_date, m2.dissolution_date, '[)')
UNION ALL SELECT 'birth before mother' FROM births b JOIN persons p
    ON p.jurisdiction = b.jurisdiction AND p.id_number = b.mother_id_number WHERE b.child_birth_date <= p.birth_date
UNION ALL SELECT 'mother not on record' FROM births b WHERE NOT EXISTS
    (SELECT 1 FROM persons p WHERE p.jurisdiction = b.jurisdiction AND p.id_number = b.mother_id_number)
UNION ALL SELECT 'birth order gap' FROM (
    SELECT mother_id_number, max(birth_order) AS top, count(*) AS n FROM births GROUP BY jurisdiction, mother_id_number) o
    WHERE top <> n
UNION ALL SELECT 'birth order against dates' FROM births b1 JOIN births b2
    ON b1.jurisdiction = b2.jurisdiction AND b1.mother_id_number = b2.mother_id_number
    AND b1.birth_order < b2.birth_order AND b1.child_birth_date > b2.child_birth_date
UNION ALL SELECT 'two open pregnancies' FROM pregnancies WHERE closed_on IS NULL
    GROUP BY jurisdiction, mother_id_number HAVING count(*) > 1
UNION ALL SELECT 'pregnancy of a man' FROM pregnancies g JOIN persons p
    ON p.jurisdiction = g.jurisdiction AND p.id_number = g.mother_id_number WHERE p.sex <> 'F'
UNION ALL SELECT 'anything in the future' FROM marriages WHERE marriage_date > current_date
    OR dissolution_date > current_date
"""
# What a write can change; a refused write must leave all of it as it was.
FOOTPRINT = """
SELECT (SELECT count(*) FROM outbox) AS outbox, (SELECT count(*) FROM persons) AS persons,
       (SELECT count(*) FROM marriages WHERE dissolution_date IS NULL) AS active_marriages,
       (SELECT count(*) FROM marriages) AS marriages, (SELECT count(*) FROM births) AS births,
       (SELECT count(*) FROM migrations) AS migrations, (SELECT count(*) FROM pregnancies) AS pregnancies,
       (SELECT count(*) FROM pregnancies WHERE closed_on IS NULL) AS open_pregnancies,
       (SELECT count(*) FROM corrections) AS corrections,
       (SELECT coalesce(string_agg(child_name, ',' ORDER BY id), '') FROM births) AS child_names
"""


@pytest.fixture(scope="module")
def registry(pg: EmbeddedPostgres) -> Iterator[tuple[TestClient, str]]:
    with in_process_registry(pg, "prop", HERE, SECRET, log_json=True) as (client, dsn):
        yield client, dsn


dates = st.dates(min_value=dt.date(2010, 1, 1), max_value=TODAY + dt.timedelta(days=10))


def test_random_event_sequences_never_reach_an_illegal_state(registry: tuple[TestClient, str]) -> None:
    client, dsn = registry
    loop = asyncio.new_event_loop()
    conn: asyncpg.Connection = loop.run_until_complete(asyncpg.connect(dsn))
    stats = {"accepted": 0, "refused": 0}

    def fetch(sql: str) -> list[asyncpg.Record]:
        return loop.run_until_complete(conn.fetch(sql))

    class Registrar(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.people: list[tuple[str, str]] = []  # (id number, sex)
            self.marriages: list[str] = []
            self.pregnancies: list[str] = []
            self.births: list[dict[str, Any]] = []

        def person(self, data: st.DataObject, sex: str | None = None) -> str:
            """Mostly someone on record (of either sex, so some choices are wrong), sometimes a stranger."""
            choice = data.draw(st.integers(0, 9), label="known")
            fitting = [n for n, s in self.people if sex is None or s == sex]
            if fitting and choice > 1:
                return data.draw(st.sampled_from(fitting), label="who")
            if self.people and choice == 1:
                return data.draw(st.sampled_from(self.people), label="anyone")[0]
            return person_id(sex or data.draw(st.sampled_from("FM"), label="sex"))

        def write(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
            before = fetch(FOOTPRINT)[0]
            r = client.post(path, json=body)
            after = fetch(FOOTPRINT)[0]
            assert r.status_code < 500, r.text
            if r.status_code < 300:
                stats["accepted"] += 1
                assert after["outbox"] > before["outbox"], f"{path} accepted but published nothing"
                return r.json()  # type: ignore[no-any-return]
            stats["refused"] += 1
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json().get("errors"), r.text  # the answer names the field and rule
            assert dict(after) == dict(before), (
                f"{path} refused ({r.text}) but changed {dict(before)} -> {dict(after)}"
            )
            return None

        @initialize()
        def some_adults(self) -> None:
            for sex, year in (("F", 1986), ("M", 1984), ("F", 1990), ("M", 1992)):
                self.register_person(sex, dt.date(year, 3, 3))

        @rule(sex=st.sampled_from("FM"), born=st.dates(dt.date(1970, 1, 1), dt.date(2006, 12, 31)))
        def register_person(self, sex: str, born: dt.date) -> None:
            number = person_id(sex, born)
            body = {
                "id_number": number,
                "name": "随机",
                "sex": sex,
                "birth_date": born.isoformat(),
                "hukou_division": HERE,
            }
            if self.write("/v1/persons", body):
                self.people.append((number, sex))

        @rule(data=st.data(), when=dates)
        def marry(self, data: st.DataObject, when: dt.date) -> None:
            body = {
                "spouse_a_id_number": self.person(data, "M"),
                "spouse_b_id_number": self.person(data, "F"),
                "marriage_date": when.isoformat(),
            }
            out = self.write("/v1/marriages", body)
            if out:
                self.marriages.append(out["marriage_id"])

        @rule(data=st.data(), when=dates, reason=st.sampled_from(["divorce", "death", "annulment"]))
        def dissolve(self, data: st.DataObject, when: dt.date, reason: str) -> None:
            target = data.draw(st.sampled_from([*self.marriages, str(uuid.uuid4())]), label="marriage")
            self.write(
                f"/v1/marriages/{target}/dissolution",
                {"dissolution_date": when.isoformat(), "reason": reason},
            )

        @rule(data=st.data(), when=dates, kind=st.sampled_from(["departed", "arrived", "returned"]))
        def move(self, data: st.DataObject, when: dt.date, kind: str) -> None:
            away = (HERE, ELSEWHERE) if kind == "departed" else (ELSEWHERE, HERE)
            body = {
                "kind": kind,
                "id_number": self.person(data),
                "from_division": away[0],
                "to_division": away[1],
                "migration_date": when.isoformat(),
                "name": "随机",
                "hukou_division": data.draw(st.sampled_from([HERE, ELSEWHERE]), label="hukou"),
            }
            self.write("/v1/migrations", body)

        @rule(data=st.data(), when=dates, weeks=st.integers(-2, 50))
        def register_pregnancy(self, data: st.DataObject, when: dt.date, weeks: int) -> None:
            body = {
                "mother_id_number": self.person(data, "F"),
                "registered_on": when.isoformat(),
                "expected_delivery": (when + dt.timedelta(weeks=weeks)).isoformat(),
            }
            out = self.write("/v1/pregnancies", body)
            if out:
                self.pregnancies.append(out["pregnancy_id"])

        @rule(data=st.data(), when=dates, outcome=st.sampled_from(["birth", "ended", "transferred"]))
        def close_pregnancy(self, data: st.DataObject, when: dt.date, outcome: str) -> None:
            target = data.draw(st.sampled_from([*self.pregnancies, str(uuid.uuid4())]), label="pregnancy")
            self.write(
                f"/v1/pregnancies/{target}/closure", {"outcome": outcome, "closed_on": when.isoformat()}
            )

        @rule(data=st.data(), when=dates, order=st.one_of(st.none(), st.integers(1, 4)), reuse=st.booleans())
        def birth(self, data: st.DataObject, when: dt.date, order: int | None, reuse: bool) -> None:
            certificate = (
                self.births[-1]["medical_certificate_number"]
                if reuse and self.births
                else medical_certificate()
            )
            body = {
                "medical_certificate_number": certificate,
                "child_name": "孩子",
                "child_sex": data.draw(st.sampled_from("FM"), label="child_sex"),
                "child_birth_date": when.isoformat(),
                "mother_id_number": self.person(data, "F"),
                "birth_order": order,
            }
            if data.draw(st.booleans(), label="with_father"):
                body["father_id_number"] = self.person(data, "M")
            out = self.write("/v1/births", body)
            if out:
                self.births.append(out)

        @rule(
            data=st.data(),
            name=st.sampled_from(["改正", "", "x" * 70]),
            when=dates,
            right_event=st.booleans(),
        )
        def correct_birth(self, data: st.DataObject, name: str, when: dt.date, right_event: bool) -> None:
            if not self.births:
                return
            birth = data.draw(st.sampled_from(self.births), label="birth")
            field, value = data.draw(
                st.sampled_from(
                    [("child_name", name), ("child_birth_date", when.isoformat()), ("birth_order", 1)]
                ),
                label="change",
            )
            self.write(
                "/v1/corrections",
                {
                    "corrected_event_id": birth["event_id"] if right_event else str(uuid.uuid4()),
                    "record_type": "birth",
                    "record_id": birth["birth_id"],
                    "changes": {field: value},
                    "reason": "fixing a typo",
                },
            )

        @invariant()
        def records_are_legal(self) -> None:
            broken = [r["broken"] for r in fetch(ILLEGAL_STATES)]
            assert not broken, broken

    try:
        run_state_machine_as_test(
            Registrar,
            settings=settings(
                max_examples=int(os.environ.get("REGISTRY_PROPERTY_EXAMPLES", "15")),
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=False,
            ),
        )
    finally:
        loop.run_until_complete(conn.close())
        loop.close()
    # The generator must exercise both sides, or the property says little.
    print("registry property test:", stats)
    assert stats["accepted"] > 20 and stats["refused"] > 20, stats
