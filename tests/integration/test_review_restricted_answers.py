"""An answer to a correction of a pregnancy names no field of hers on the broker, not even through
the rule that refused it (DESIGN.md section 10; ``shared.sensitivity.withheld_reason``).

B corrects her pregnancy's due date to one A's copy cannot hold (a peer may send well-formed lies;
or A's copy was registered otherwise). A refuses it as a conflict, with the rule that refused it as
its reason: ``expected-delivery-plausible``. That answer lies on the broker beside her subject key,
where every registry that knows her identity number can read it: its reason must not say that her
notification corrected a due date, as its conflicts do not.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from devstack.trust import TrustFiles
from services.migrant_exchange.settings import ExchangeSettings
from services.registry.service_layer.counterpart import apply_notification
from shared.db import unit_of_work
from shared.events.catalog import parse_event
from tests.exchange.exchange_helpers import (
    SECRET,
    A,
    B,
    Registries,
    migrated_exchange,
    new_person,
    registry_of_a,
    route,
)


@pytest.fixture
def trust(tmp_path: Path) -> TrustFiles:
    files = TrustFiles(tmp_path / "trust")
    files.write([A, B], {})
    return files


async def test_a_refused_correction_of_her_due_date_names_no_due_date_on_the_broker(
    pg: Any, trust: TrustFiles
) -> None:
    settings = ExchangeSettings(subject_key_secret=SECRET.decode(), trust_list_file=str(trust.trust_list))
    r = Registries()
    mother = new_person()
    pregnancy_id = str(uuid.uuid4())
    registration = r.make(
        "pregnancy.registered.v1",
        B,
        {"pregnancy_id": pregnancy_id, "mother_id_number": mother, "registered_in": B,
         "registered_on": "2025-03-01", "expected_delivery": "2025-10-01"},
        mother,
        origin=A,
        destination=B,
    )  # fmt: skip
    correction = r.make(
        "record.corrected.v1",
        B,
        {"correction_id": str(uuid.uuid4()), "corrected_event_id": str(registration.id),
         "record_type": "pregnancy", "record_id": pregnancy_id,
         "changes": {"expected_delivery": "2027-01-01"}, "reason": "misread from the form"},
        mother,
        origin=A,
        destination=B,
    )  # fmt: skip
    async with migrated_exchange(pg, "answers") as pool:
        await route(pool, settings, [r.person(mother, B, A, B), registration, correction])
        sent = await pool.fetch(
            "SELECT value FROM outbox WHERE event_type = 'exchange.notification.v1' ORDER BY id"
        )
    notes = [parse_event(bytes(s["value"])) for s in sent]
    notes = [n for n in notes if n.data.event_id in (registration.id, correction.id)]
    assert len(notes) == 2

    reg, reg_settings = await registry_of_a(pg, trust, mother, "answers")
    try:
        for note in notes:
            async with unit_of_work(reg) as conn:
                await apply_notification(conn, reg_settings, note)
        rows = await reg.fetch(
            "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id"
        )
        answers = [orjson.loads(row["value"])["data"] for row in rows]
        assert [a["outcome"] for a in answers] == ["applied", "conflict"], answers
        assert answers[1]["conflicts"] == []
        value = bytes(rows[1]["value"]).lower()
        assert b"deliver" not in value and b"pregnan" not in value, answers[1]["reason"]
    finally:
        await reg.close()
