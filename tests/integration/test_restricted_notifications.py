"""A pregnancy notification names its kind to its addressee only (DESIGN.md section 10: pregnancy
data is readable by the person's own two registries and nobody else, broker readers included).

Every registry reads the whole notification topic and holds the subject-key secret, so it can
compute the key of anyone whose identity number it knows. A notification that named
``pregnancy.registered.v1`` (or a withheld ``expected_delivery``) in clear beside that key would
tell it that she registered a pregnancy, where and when, however well the payload is sealed. On
the wire a sensitive notification names only the neutral category (``shared.sensitivity``); its
real type and withheld fields travel inside the seal, bound to the notification
(``shared.sealing``), and the target registry applies the type it finds there.

The exchange's routing handler (``messagebus.in_order``) runs on a real, migrated PostgreSQL
database with registry events built as the registries build them; what it queues in its outbox is
what the relay publishes. The target registry applies those very messages.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from devstack.trust import TrustFiles
from services.migrant_exchange.adapters import repository
from services.migrant_exchange.entrypoints import views
from services.migrant_exchange.service_layer import batches, handlers
from services.migrant_exchange.settings import ExchangeSettings
from services.registry.service_layer.counterpart import apply_notification
from shared.auth import Client
from shared.consumer_admission import trust_list
from shared.db import unit_of_work
from shared.events.catalog import parse_event
from shared.events.envelope import Envelope
from shared.events.payloads import ExchangeFeedbackV1, ExchangeNotificationV1
from shared.sealing import CannotOpen, notification_aad, notification_contents, open_sealed, seal
from shared.sensitivity import NEUTRAL_CATEGORY, restored_purpose
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

SETTINGS = ExchangeSettings(subject_key_secret=SECRET.decode())
# Towards A the agreement withholds a pregnancy's expected delivery: a field whose name says the kind.
VISIBLE = {
    "*": {"pregnancy.registered.v1": ["pregnancy_id", "mother_id_number", "registered_in", "registered_on"]}
}


@pytest.fixture
async def pool(pg: Any) -> AsyncIterator[asyncpg.Pool]:
    async with migrated_exchange(pg, "restricted", VISIBLE) as made:
        yield made


@pytest.fixture
def trust(tmp_path: Path) -> TrustFiles:
    """Keys for A and B, as the embedded stack makes them: both have an encryption key."""
    files = TrustFiles(tmp_path / "trust")
    files.write([A, B], {})
    return files


def _pregnancy(r: Registries, mother: str) -> Envelope[Any]:
    """Her pregnancy registered at B, where she lives (her hukou is A): A is told."""
    return r.make(
        "pregnancy.registered.v1",
        B,
        {
            "pregnancy_id": str(uuid.uuid4()),
            "mother_id_number": mother,
            "registered_in": B,
            "registered_on": "2025-03-01",
            "expected_delivery": "2025-10-01",
        },
        mother,
        origin=A,
        destination=B,
    )


async def _on_the_wire(pool: asyncpg.Pool, event_id: uuid.UUID) -> list[asyncpg.Record]:
    """The notification messages of an event as the relay publishes them: key, value, headers."""
    rows = await pool.fetch(
        "SELECT key, value, headers FROM outbox WHERE event_type = 'exchange.notification.v1'"
    )
    return [r for r in rows if orjson.loads(r["value"])["data"]["event_id"] == str(event_id)]


async def test_a_pregnancy_notification_does_not_name_its_type_and_person_on_the_broker(
    pool: asyncpg.Pool,
) -> None:
    """Every registry reads the whole notification topic and holds the subject-key secret, so it can
    compute the key of anyone whose identity number it knows (a former resident, say). The sealed
    payload hides the data, but ``data.event_type`` travelled in clear beside ``subject``: any
    registry learned that this person registered (and later closed) a pregnancy, where and when.
    Here A has no encryption key (REST-only): on the wire there is nothing but the neutral type."""
    r = Registries()
    mother = new_person()
    registration = _pregnancy(r, mother)
    await route(pool, SETTINGS, [r.person(mother, A, A, B), registration])
    rows = await pool.fetch("SELECT value FROM outbox WHERE event_type = 'exchange.notification.v1'")
    on_the_wire = [orjson.loads(row["value"]) for row in rows]
    about_her = [m for m in on_the_wire if m["data"]["event_id"] == str(registration.id)]
    assert about_her, "the pregnancy was routed"
    for m in about_her:
        assert not str(m["data"]["event_type"]).startswith("pregnancy."), (
            f"a notification names {m['data']['event_type']} in clear under subject {m['subject'][:8]}…"
        )
        assert m["data"]["event_type"] == NEUTRAL_CATEGORY
        assert (
            m["data"]["sealed"] is None and m["data"]["payload"] == {} and m["data"]["withheld_fields"] == []
        )
    # The exchange routes by the real type and hands it to the addressee over REST.
    kept = await pool.fetchrow(
        "SELECT event_type, withheld_fields FROM notifications WHERE event_id = $1", registration.id
    )
    assert kept["event_type"] == "pregnancy.registered.v1" and kept["withheld_fields"] == [
        "expected_delivery"
    ]


async def test_the_type_and_withheld_fields_of_a_pregnancy_travel_inside_the_seal(
    pool: asyncpg.Pool, trust: TrustFiles
) -> None:
    """Sealed to A's key: outside the seal the neutral category, no withheld field, nothing in the
    value, the key or the Kafka headers that names a pregnancy; inside, what A must apply. A
    notification of any other kind keeps its contract (its type and withheld fields in clear, the
    bare payload sealed)."""
    settings = ExchangeSettings(subject_key_secret=SECRET.decode(), trust_list_file=str(trust.trust_list))
    r = Registries()
    mother = new_person()
    person = r.person(mother, B, A, B)  # registered at B, where she lives: A, her hukou, is told
    registration = _pregnancy(r, mother)
    await route(pool, settings, [person, registration])

    [sent] = await _on_the_wire(pool, registration.id)
    assert b"pregnan" not in bytes(sent["value"]).lower() and b"expected_delivery" not in bytes(sent["value"])
    assert "pregnan" not in sent["key"] and not [v for v in sent["headers"].values() if "pregnan" in v]
    n = ExchangeNotificationV1.model_validate(orjson.loads(sent["value"])["data"])
    assert (n.target_division, n.event_type, n.withheld_fields, n.payload) == (A, NEUTRAL_CATEGORY, [], {})
    assert n.sealed is not None
    keys = trust.keyring(A).decryption_keys(A)
    opened = open_sealed(n.sealed, keys, notification_aad(n.notification_id, A, NEUTRAL_CATEGORY))
    event_type, withheld, payload = notification_contents(opened, n.event_type, n.withheld_fields)
    assert (event_type, withheld) == ("pregnancy.registered.v1", ["expected_delivery"])
    assert payload["mother_id_number"] == mother and "expected_delivery" not in payload
    # Sealed under the neutral name: relabelled with its real type, it no longer opens.
    with pytest.raises(CannotOpen):
        open_sealed(n.sealed, keys, notification_aad(n.notification_id, A, "pregnancy.registered.v1"))

    [told] = await _on_the_wire(pool, person.id)
    other = ExchangeNotificationV1.model_validate(orjson.loads(told["value"])["data"])
    assert other.event_type == "person.registered.v1" and other.sealed is not None
    plain = open_sealed(other.sealed, keys, notification_aad(other.notification_id, A, other.event_type))
    assert orjson.loads(plain)["id_number"] == mother  # the bare payload, as before


async def test_the_target_registry_applies_the_sealed_type_and_refuses_a_relabelled_notification(
    pool: asyncpg.Pool, pg: Any, trust: TrustFiles
) -> None:
    """A opens the seal and applies the pregnancy it finds there, and answers ``applied``. The same
    notification with its neutral name swapped for the real type, or a notification of another kind
    renamed to the neutral category, does not open: refused, nothing applied. (On the broker the
    exchange's signature already refuses a relabelled envelope; this is the seal's own binding.)"""
    settings = ExchangeSettings(subject_key_secret=SECRET.decode(), trust_list_file=str(trust.trust_list))
    r = Registries()
    mother = new_person()
    person = r.person(mother, B, A, B)
    registration = _pregnancy(r, mother)
    await route(pool, settings, [person, registration])
    [sent] = await _on_the_wire(pool, registration.id)
    [told] = await _on_the_wire(pool, person.id)
    genuine = parse_event(bytes(sent["value"]))
    other = parse_event(bytes(told["value"]))

    def renamed(e: Envelope[Any], event_type: str) -> Envelope[Any]:
        """The notification as a broker (or a registry replaying it) might relabel it."""
        data = e.data.model_copy(update={"event_type": event_type})
        return e.model_copy(update={"id": uuid.uuid4(), "data": data})

    forged = [renamed(genuine, "pregnancy.registered.v1"), renamed(other, NEUTRAL_CATEGORY)]

    reg, reg_settings = await registry_of_a(pg, trust, mother, "restricted")
    try:
        for e in forged:
            async with unit_of_work(reg) as conn:
                await apply_notification(conn, reg_settings, e)
        assert await reg.fetchval("SELECT count(*) FROM pregnancies") == 0
        async with unit_of_work(reg) as conn:
            await apply_notification(conn, reg_settings, genuine)
        kept = await reg.fetch("SELECT id, jurisdiction, source_division, expected_delivery FROM pregnancies")
        assert [(k["jurisdiction"], k["source_division"], k["expected_delivery"]) for k in kept] == [
            (A, B, None)
        ]
        assert str(kept[0]["id"]) == registration.data.model_dump(mode="json")["pregnancy_id"]
        answers = [
            orjson.loads(row["value"])["data"]
            for row in await reg.fetch(
                "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id"
            )
        ]
        assert [a["outcome"] for a in answers] == ["rejected", "rejected", "applied"]
        assert answers[2]["notification_id"] == str(genuine.data.notification_id)
        assert all(a["reason"].startswith("cannot read") for a in answers[:2])
    finally:
        await reg.close()


async def test_a_rest_pick_up_is_audited_under_the_purpose_its_disclosure_names(pool: asyncpg.Pool) -> None:
    """A (REST-only here: no encryption key) lists its notifications with their payloads: her
    registration and her pregnancy. Each first pick-up is a disclosure told to her registries
    (``notification.fetched``, maternal care for the pregnancy, registration for the person), and
    appended to the exchange's own audit log: under the same true purpose, not a generic
    ``exchange`` that would hide that a pregnancy's data was handed over (DESIGN section 8: every
    disclosure audited with its purpose). Picked up again, the audit entry says the same."""
    r = Registries()
    mother = new_person()
    person, registration = r.person(mother, B, A, B), _pregnancy(r, mother)
    await route(pool, SETTINGS, [person, registration])
    reader = Client("reg-a-rest", "jurisdiction", A, frozenset({"exchange:read"}))
    for _ in range(2):
        async with unit_of_work(pool) as conn:
            shown = await views.notifications_read(
                conn, reader, await repository.list_notifications(conn, A, None, 100, None)
            )
    assert {n["event_type"] for n in shown if n["payload"] is not None} == {
        "person.registered.v1",
        "pregnancy.registered.v1",
    }
    told = {
        entry["notification_id"]: entry
        for row in await pool.fetch("SELECT value FROM outbox WHERE event_type = 'disclosure.batch.v1'")
        for entry in orjson.loads(row["value"])["data"]["entries"]
        if entry["action"] == "notification.fetched"
    }
    audited = await pool.fetch(
        "SELECT purpose, detail->>'notification_id' AS notification_id, detail->>'event_type' AS event_type"
        " FROM audit_log WHERE action = 'notification.fetched'"
    )
    assert len(audited) == 4 and len(told) == 2  # audited at each pick-up, told the first time
    for entry in audited:
        assert entry["purpose"] == restored_purpose(told[entry["notification_id"]]["purpose"])
    assert {(e["event_type"], e["purpose"]) for e in audited} == {
        ("person.registered.v1", "registration"),
        ("pregnancy.registered.v1", "maternal_care"),
    }


async def test_a_correction_of_a_pregnancy_is_applied_from_inside_the_seal_and_in_its_old_form(
    pg: Any, trust: TrustFiles
) -> None:
    """A correction of her pregnancy (``record.corrected.v1``, ``record_type`` pregnancy) is as
    restricted as the pregnancy (``shared.sensitivity.is_restricted``): the exchange names it
    ``vital.restricted`` and seals its type, and A applies the correction it finds inside. One
    sealed under its own type, as an exchange not yet upgraded queued it, is still applied. A
    ``vital.restricted`` whose seal holds a correction of anything else is not what the name says:
    refused, nothing changed."""
    settings = ExchangeSettings(subject_key_secret=SECRET.decode(), trust_list_file=str(trust.trust_list))
    r = Registries()
    mother = new_person()
    person, registration = r.person(mother, B, A, B), _pregnancy(r, mother)
    pregnancy_id = registration.data.model_dump(mode="json")["pregnancy_id"]

    def corrected(record_type: str, record_id: str, changes: dict[str, Any]) -> Envelope[Any]:
        data = {
            "correction_id": str(uuid.uuid4()),
            "corrected_event_id": str(registration.id),
            "record_type": record_type,
            "record_id": record_id,
            "changes": changes,
            "reason": "misread from the form",
        }
        return r.make("record.corrected.v1", B, data, mother, origin=A, destination=B)

    first = corrected("pregnancy", pregnancy_id, {"expected_delivery": "2025-10-08"})
    async with migrated_exchange(pg, "corrected") as pool:
        await route(pool, settings, [person, registration, first])
        [genuine] = [parse_event(bytes(w["value"])) for w in await _on_the_wire(pool, registration.id)]
        [sent] = await _on_the_wire(pool, first.id)
    value = bytes(sent["value"])
    assert b"record.corrected" not in value and b"expected_delivery" not in value and b"pregnan" not in value
    fix = parse_event(value)
    assert (fix.data.event_type, fix.data.withheld_fields) == (NEUTRAL_CATEGORY, [])

    keys = trust.keyring(A).decryption_keys(A)
    key = trust_list(str(trust.trust_list)).encryption_key(A, dt.datetime.now(dt.UTC))
    assert key is not None and fix.data.sealed is not None
    _, _, payload = notification_contents(
        open_sealed(fix.data.sealed, keys, notification_aad(fix.data.notification_id, A, NEUTRAL_CATEGORY)),
        NEUTRAL_CATEGORY,
        [],
    )

    def sent_as(named: str, plaintext: bytes, correction: dict[str, Any]) -> Envelope[Any]:
        """The correction's notification, named ``named`` in clear and sealing ``plaintext``."""
        nid = uuid.uuid4()
        data = fix.data.model_copy(
            update={
                "notification_id": nid,
                "event_id": uuid.UUID(correction["correction_id"]),
                "event_type": named,
                "sealed": seal(plaintext, key.kid, key.raw, notification_aad(nid, A, named)),
            }
        )
        return fix.model_copy(update={"id": uuid.uuid4(), "data": data})

    # As an exchange not yet upgraded sent it: the bare payload, sealed under its own type.
    later = {**payload, "correction_id": str(uuid.uuid4()), "changes": {"expected_delivery": "2025-10-15"}}
    old = sent_as("record.corrected.v1", orjson.dumps(later), later)
    # Another kind of correction under the neutral name: her own record renamed.
    renaming = {**payload, "correction_id": str(uuid.uuid4()), "record_type": "person", "record_id": mother}
    renaming["changes"] = {"name": "别名"}
    inside = {"event_type": "record.corrected.v1", "withheld_fields": [], "payload": renaming}
    forged = sent_as(NEUTRAL_CATEGORY, orjson.dumps(inside), renaming)

    reg, reg_settings = await registry_of_a(pg, trust, mother, "corrected")
    try:
        due: list[dt.date] = []
        for e in (genuine, fix, old, forged):
            async with unit_of_work(reg) as conn:
                await apply_notification(conn, reg_settings, e)
            due.append(await reg.fetchval("SELECT expected_delivery FROM pregnancies"))
        assert due == [
            dt.date(2025, 10, 1),
            dt.date(2025, 10, 8),
            dt.date(2025, 10, 15),
            dt.date(2025, 10, 15),
        ]
        assert await reg.fetchval("SELECT name FROM persons WHERE id_number = $1", mother) == "母亲"
        answers = [
            orjson.loads(row["value"])["data"]
            for row in await reg.fetch(
                "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id"
            )
        ]
        assert [a["outcome"] for a in answers] == ["applied", "applied", "applied", "rejected"], answers
        assert answers[3]["reason"].startswith(f"cannot read {NEUTRAL_CATEGORY}")
    finally:
        await reg.close()


async def test_a_refusal_of_a_pregnancy_names_no_pregnancy_in_its_answer(
    pool: asyncpg.Pool, pg: Any, trust: TrustFiles
) -> None:
    """B closes her pregnancy; A, told of the closure, never applied the registration: it refuses
    the closure ("the pregnancy is not in our records"). Its answer lies on the broker beside her
    subject key: the reason names the neutral category, not the pregnancy, and no field."""
    settings = ExchangeSettings(subject_key_secret=SECRET.decode(), trust_list_file=str(trust.trust_list))
    r = Registries()
    mother = new_person()
    person, registration = r.person(mother, B, A, B), _pregnancy(r, mother)
    pregnancy_id = registration.data.model_dump(mode="json")["pregnancy_id"]
    closure = r.make(
        "pregnancy.closed.v1",
        B,
        {
            "pregnancy_id": pregnancy_id,
            "mother_id_number": mother,
            "closed_on": "2025-09-30",
            "outcome": "birth",
        },
        mother,
        origin=A,
        destination=B,
    )
    await route(pool, settings, [person, registration, closure])
    [sent] = await _on_the_wire(pool, closure.id)

    reg, reg_settings = await registry_of_a(pg, trust, mother, "refusal")
    try:
        async with unit_of_work(reg) as conn:
            await apply_notification(conn, reg_settings, parse_event(bytes(sent["value"])))
        [answer] = await reg.fetch("SELECT key, value FROM outbox WHERE event_type = 'exchange.feedback.v1'")
        data = orjson.loads(answer["value"])["data"]
        assert data["outcome"] == "rejected" and data["conflicts"] == []
        assert data["reason"] == f"the {NEUTRAL_CATEGORY} is not in our records"
        assert b"pregnan" not in bytes(answer["value"]).lower()
    finally:
        await reg.close()


@pytest.mark.parametrize("way", ["one answer", "a fetch of answers"])
async def test_an_old_form_answer_to_a_pregnancy_is_kept_withheld_by_the_exchange(
    pool: asyncpg.Pool, way: str
) -> None:
    """A registry not yet upgraded answers B's pregnancy notification in the old form: ``conflict``
    with ``expected_delivery`` and both due dates, a reason naming the pregnancy. The exchange, not
    one of her two registries, closes the notification as a conflict and keeps no field or value of
    the answer, whether it takes the answer alone (``record_feedback``) or with a fetch of others
    (``batches.close``)."""
    r = Registries()
    mother = new_person()
    registration = _pregnancy(r, mother)
    await route(pool, SETTINGS, [r.person(mother, A, A, B), registration])
    note = await pool.fetchval(
        "SELECT id FROM notifications WHERE event_id = $1 AND target_division = $2", registration.id, A
    )
    answer = ExchangeFeedbackV1(
        notification_id=note,
        from_division=A,
        outcome="conflict",
        conflicts=[{"field": "expected_delivery", "ours": "2025-10-09", "theirs": "2025-10-01"}],
        reason="the pregnancy is recorded here otherwise",
        applied_at=dt.datetime.now(dt.UTC),
    )
    async with unit_of_work(pool) as conn:
        if way == "one answer":
            assert await handlers.record_feedback(conn, answer)
        else:
            envelope = r.make("exchange.feedback.v1", A, answer.model_dump(mode="json"), mother)
            await batches.close(conn, [envelope])
    kept = await pool.fetchrow(
        "SELECT state, conflicts::text AS conflicts, reason FROM notifications WHERE id = $1", note
    )
    assert kept["state"] == "conflict"
    told = f"{kept['conflicts']} {kept['reason']}".lower()
    assert not any(word in told for word in ("expected_delivery", "2025-10-09", "2025-10-01", "pregnan")), (
        told
    )
