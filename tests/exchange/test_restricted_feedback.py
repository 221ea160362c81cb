"""An answer to a restricted notification says on the broker no more than the notification did.

DESIGN.md section 10: pregnancy data is readable by the person's own two registries and nobody
else, broker readers included. A notification of a pregnancy names only ``vital.restricted`` in
clear (``test_sealed_corrections``); its answer (``exchange.feedback.v1``, under her subject key
on a topic the broker's readers read) gave the conflicting fields with both registries' values
(``expected_delivery``: ours, theirs) and a reason naming a pregnancy. Now the answering registry
withholds the fields and values of a restricted notification's conflict and neutralises its
reason; the exchange still closes the notification as ``conflict``, and the registry's own record
keeps its value. A jurisdiction answering over REST may still give the fields (old form): the
exchange keeps them, shows operators no name of them, and relays the answer withheld.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from devstack.stack import Stack
from shared.sensitivity import NEUTRAL_CATEGORY
from tests.exchange.exchange_helpers import (
    OFFLINE,
    A,
    B,
    Registries,
    new_person,
    ok,
    pregnancy_registered,
    produce,
    rest_only_client,
)
from tests.helpers import query, read_topic, wait_until

pytestmark = pytest.mark.e2e
# What would tell a reader of the feedback topic that her pregnancy was answered, or its due date.
TELLING = (b"expected_delivery", b"pregnan", b"2026-10-20", b"2026-11-03", b"registered_on")


def _feedback_on_broker(stack: Stack, notification_id: object) -> list[bytes]:
    """Every feedback message on the broker that answers the notification, as any reader gets it."""
    return [v for v, _ in read_topic(stack, "exchange.feedback.v1") if str(notification_id).encode() in v]


def _told(value: bytes) -> list[bytes]:
    return [word for word in TELLING if word in value.lower()]


def _pregnancy(mother: str, pregnancy_id: str, expected_delivery: str) -> dict[str, Any]:
    return {
        "pregnancy_id": pregnancy_id,
        "mother_id_number": mother,
        "registered_in": A,
        "registered_on": "2026-02-01",
        "expected_delivery": expected_delivery,
    }


def _notification(stack: Stack, event_id: object, target: str, states: tuple[str, ...]) -> dict[str, Any]:
    [row] = wait_until(
        lambda: query(
            stack.service("migrant_exchange").dsn,
            "SELECT id, state, conflicts, reason FROM notifications WHERE event_id = $1 "
            "AND target_division = $2 AND state = ANY($3::text[])",
            event_id,
            target,
            list(states),
        ),
        timeout=20,
    )
    return dict(row)


def test_a_pregnancy_conflict_answer_carries_no_field_value_or_kind_on_the_broker(xstack: Stack) -> None:
    """A woman of A living at B; A's pregnancy of hers (due 2026-10-20) is applied at B. A then
    sends the same pregnancy due 2026-11-03 (a re-send after a change, standing in for A's relay):
    B answers ``conflict``. On the broker the answer names no field, no value, no pregnancy; the
    exchange closed the notification as a conflict, and B's record keeps its own due date."""
    r = Registries()
    mother = new_person()
    person = r.person(mother, A, A, B)
    produce(xstack, [("vital.person.v1", person)])
    _notification(xstack, person.id, B, ("applied",))

    pregnancy_id = str(uuid.uuid4())
    first = r.make(
        "pregnancy.registered.v1", A, _pregnancy(mother, pregnancy_id, "2026-10-20"), mother, origin=A
    )
    produce(xstack, [("vital.pregnancy.v1", first)])
    _notification(xstack, first.id, B, ("applied",))
    again = r.make(
        "pregnancy.registered.v1", A, _pregnancy(mother, pregnancy_id, "2026-11-03"), mother, origin=A
    )
    produce(xstack, [("vital.pregnancy.v1", again)])

    answered = _notification(xstack, again.id, B, ("conflict", "applied", "rejected"))
    assert answered["state"] == "conflict", answered  # the exchange closed it as B answered
    b_db = xstack.service(f"registry-{B}").dsn
    [kept] = query(
        b_db, "SELECT expected_delivery::text AS due FROM pregnancies WHERE id = $1", uuid.UUID(pregnancy_id)
    )
    assert kept["due"] == "2026-10-20"  # B's own record keeps its value for its registrars

    sent = wait_until(lambda: _feedback_on_broker(xstack, answered["id"]), timeout=15)
    for value in sent:
        assert not _told(value), (_told(value), value)
        data = orjson.loads(value)["data"]
        assert data["outcome"] == "conflict" and data["conflicts"] == []
        assert NEUTRAL_CATEGORY in (data["reason"] or "")


def test_a_rest_answer_to_a_pregnancy_is_relayed_withheld_and_shown_to_operators_by_no_name(
    xstack: Stack,
) -> None:
    """510104 answers B's pregnancy notification over REST in the old form: ``conflict`` with
    ``expected_delivery`` and both values, a reason naming the pregnancy. The exchange accepts it;
    the answer it relays to the broker names no field, no value, no pregnancy, and the operator sees the conflict by no field name that tells the kind."""
    offline = rest_only_client(xstack, "restricted-feedback-510104")
    _, pregnancy = pregnancy_registered(xstack, B, OFFLINE)
    note = _notification(xstack, uuid.UUID(str(pregnancy["event_id"])), OFFLINE, ("pending", "overdue"))
    conflict = {
        "outcome": "conflict",
        "conflicts": [{"field": "expected_delivery", "ours": "2026-11-03", "theirs": "2026-10-20"}],
        "reason": "the pregnancy is recorded here otherwise",
    }
    answered = offline.post(f"/v1/notifications/{note['id']}/feedback", json=conflict)
    assert answered.status_code == 200 and answered.json()["state"] == "conflict", answered.text

    sent = wait_until(lambda: _feedback_on_broker(xstack, note["id"]), timeout=15)
    for value in sent:
        assert not _told(value), (_told(value), value)
        assert orjson.loads(value)["data"]["conflicts"] == []

    operator = httpx.Client(
        base_url=xstack.service("migrant_exchange").url,
        headers={"Authorization": f"Bearer {xstack.token('operator')}"},
        timeout=10,
    )
    seen = ok(operator.get(f"/v1/notifications/{note['id']}"))
    assert seen["state"] == "conflict" and seen["event_type"] == NEUTRAL_CATEGORY
    assert not _told(orjson.dumps(seen)), seen
    # Nor does the exchange keep what the answer gave (it is not one of her two registries).
    kept = query(
        xstack.service("migrant_exchange").dsn,
        "SELECT state, conflicts::text AS conflicts, reason FROM notifications WHERE id = $1",
        note["id"],
    )[0]
    assert kept["state"] == "conflict"
    assert not _told(orjson.dumps(dict(kept))), dict(kept)
