"""Confidential notifications: reading the broker as registry 440703 would (any reader of the
topic), nothing addressed to 320412 is in clear; a pregnancy notification's payload opens only
with its target's key, and the exchange purges the payload once the target applied it.

Nor does a pregnancy notification say what it is: every registry holds the subject-key secret
and can compute the key of a woman whose identity number it knows, so on the broker such a
notification names only the neutral category ``vital.restricted`` (value, key and headers alike),
and its real type travels in the seal. The target still applies it, and its answer closes the
notification; a REST-only target (110101, no encryption key) finds nothing on the broker but the
neutral name, and gets the real type with the payload from the exchange's API."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
import pytest

from devstack.stack import DESTINATION, ORIGIN, REST_ONLY, Stack
from shared.events.catalog import ADDRESSEE_HEADER
from shared.events.payloads import SealedPayload
from shared.identity import subject_key
from shared.sealing import CannotOpen, notification_aad, notification_contents, open_sealed
from shared.sensitivity import NEUTRAL_CATEGORY
from tests.helpers import Api, migrant, person_id, query, read_topic, wait_until

pytestmark = pytest.mark.e2e
# Not inside a token: a subject key's hex can hold 18 digits in a row.
ID_NUMBER = re.compile(rb"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")


def _pregnancy_for_origin(stack: Stack) -> tuple[str, dict[str, Any]]:
    """A woman of 320412 living in 440703 registers a pregnancy there; the exchange notifies 320412."""
    mother = migrant(stack, ORIGIN, DESTINATION, "孕妇", arrived=False)
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    dest_db = stack.service(f"registry-{DESTINATION}").dsn
    wait_until(lambda: query(dest_db, "SELECT 1 FROM persons WHERE id_number = $1", mother), timeout=15)
    preg = dest.post("/v1/pregnancies", {"mother_id_number": mother, "registered_on": "2025-05-01"})
    assert preg.status_code == 201, preg.text
    return mother, preg.json()


def _sent(stack: Stack, notification_id: object) -> list[tuple[dict[str, Any], bytes, dict[str, bytes]]]:
    """Every send of one notification on the broker: the message, its bytes and its headers."""
    return [
        (m, v, h)
        for v, h in read_topic(stack, "exchange.notification.v1")
        if (m := orjson.loads(v))["data"]["notification_id"] == str(notification_id)
    ]


def _names_no_pregnancy(value: bytes, headers: dict[str, bytes]) -> None:
    """Nothing a reader of the topic sees names a pregnancy: not the type, not a withheld field."""
    assert b"pregnan" not in value.lower() and b"expected_delivery" not in value
    assert not [k for k, v in headers.items() if b"pregnan" in v.lower()], headers


def test_a_pregnancy_notification_is_readable_by_its_target_only(stack: Stack) -> None:
    mother, pregnancy = _pregnancy_for_origin(stack)
    subject = subject_key(mother, stack.subject_secret.encode())
    exchange = stack.service("migrant_exchange").dsn
    # The exchange routes by the real type (its own row keeps it) ...
    [note] = wait_until(
        lambda: query(
            exchange,
            "SELECT id, state, payload FROM notifications WHERE subject = $1 "
            "AND event_type = 'pregnancy.registered.v1' AND state = 'applied'",
            subject,
        ),
        timeout=20,
    )
    # ... the target applied it (its answer closed the notification), so it could read it ...
    origin_db = stack.service(f"registry-{ORIGIN}").dsn
    assert query(origin_db, "SELECT 1 FROM pregnancies WHERE id = $1", uuid.UUID(pregnancy["pregnancy_id"]))
    # ... and the exchange no longer keeps what it carried.
    assert note["payload"] is None

    sent = _sent(stack, note["id"])
    assert sent, "the notification is on the broker"
    for message, value, headers in sent:
        data = message["data"]
        # other registries pass it over by this header, undecoded
        assert headers[ADDRESSEE_HEADER] == ORIGIN.encode()
        assert message["subject"] == subject  # the key every registry can compute ...
        assert data["event_type"] == NEUTRAL_CATEGORY and data["withheld_fields"] == []  # ... names no kind
        _names_no_pregnancy(value, headers)
        raw = orjson.dumps(message)
        assert data["payload"] == {} and data["sealed"] is not None
        assert mother.encode() not in raw and pregnancy["pregnancy_id"].encode() not in raw
        sealed = SealedPayload.model_validate(data["sealed"])
        aad = notification_aad(data["notification_id"], data["target_division"], data["event_type"])
        # 440703 (and anyone without 320412's key) cannot open it ...
        with pytest.raises(CannotOpen):
            open_sealed(sealed, stack.trust.keyring(DESTINATION).decryption_keys(DESTINATION), aad)
        stolen_kid = {
            sealed.kid: next(iter(stack.trust.keyring(DESTINATION).decryption_keys(DESTINATION).values()))
        }
        with pytest.raises(CannotOpen):
            open_sealed(sealed, stolen_kid, aad)  # even trying its own key under the target's kid
        keys = stack.trust.keyring(ORIGIN).decryption_keys(ORIGIN)
        # ... nor can the sealed payload be moved into another notification, or be named by its real type.
        for other in (
            notification_aad(uuid.uuid4(), ORIGIN, data["event_type"]),
            notification_aad(data["notification_id"], ORIGIN, "pregnancy.registered.v1"),
        ):
            with pytest.raises(CannotOpen):
                open_sealed(sealed, keys, other)
        # The target opens it, and finds there what it applies.
        event_type, withheld, opened = notification_contents(
            open_sealed(sealed, keys, aad), data["event_type"], data["withheld_fields"]
        )
        assert (event_type, withheld) == ("pregnancy.registered.v1", [])
        assert opened["mother_id_number"] == mother and opened["pregnancy_id"] == pregnancy["pregnancy_id"]


def test_a_pregnancy_closure_names_only_the_neutral_category_and_still_closes_at_the_target(
    stack: Stack,
) -> None:
    """The registering registry closes the pregnancy; 320412 closes its copy from the sealed
    closure, and nothing on the broker says that this was a pregnancy, or that it ended."""
    _, pregnancy = _pregnancy_for_origin(stack)
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    origin_db = stack.service(f"registry-{ORIGIN}").dsn
    pregnancy_id = uuid.UUID(pregnancy["pregnancy_id"])
    wait_until(lambda: query(origin_db, "SELECT 1 FROM pregnancies WHERE id = $1", pregnancy_id), timeout=20)
    closed = dest.post(f"/v1/pregnancies/{pregnancy_id}/closure", {"outcome": "ended"})
    assert closed.status_code in (200, 201), closed.text
    exchange = stack.service("migrant_exchange").dsn
    [note] = wait_until(
        lambda: query(
            exchange,
            "SELECT id, event_type FROM notifications WHERE event_id = $1 AND target_division = $2 "
            "AND state = 'applied'",
            uuid.UUID(closed.json()["event_id"]),
            ORIGIN,
        ),
        timeout=20,
    )
    assert note["event_type"] == "pregnancy.closed.v1"
    at_origin = query(origin_db, "SELECT outcome FROM pregnancies WHERE id = $1", pregnancy_id)
    assert [r["outcome"] for r in at_origin] == ["ended"]
    sent = _sent(stack, note["id"])
    assert sent, "the closure is on the broker"
    for message, value, headers in sent:
        assert message["data"]["event_type"] == NEUTRAL_CATEGORY
        _names_no_pregnancy(value, headers)


def test_a_rest_only_target_finds_only_the_neutral_name_on_the_broker_and_the_type_over_rest(
    stack: Stack,
) -> None:
    """A woman of 320412 living in 110101 (no encryption key, not on Kafka) registers a pregnancy at
    320412: the notification to 110101 carries no payload and only the neutral name; 110101's
    client reads the real type with the payload over REST and answers there."""
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    mother = person_id("F")
    born = f"{mother[6:10]}-{mother[10:12]}-{mother[12:14]}"
    person = {"id_number": mother, "name": "孕妇", "sex": "F", "birth_date": born, "hukou_division": ORIGIN}
    assert origin.post("/v1/persons", person).status_code == 201
    move = {
        "id_number": mother,
        "from_division": ORIGIN,
        "to_division": REST_ONLY,
        "migration_date": "2025-02-01",
    }
    assert origin.post("/v1/migrations", {"kind": "departed", **move}).status_code == 201
    preg = origin.post("/v1/pregnancies", {"mother_id_number": mother, "expected_delivery": "2027-02-01"})
    assert preg.status_code == 201, preg.text
    exchange = stack.service("migrant_exchange").dsn
    [note] = wait_until(
        lambda: query(
            exchange,
            "SELECT id FROM notifications WHERE event_id = $1 AND target_division = $2",
            uuid.UUID(preg.json()["event_id"]),
            REST_ONLY,
        ),
        timeout=20,
    )
    sent = wait_until(lambda: _sent(stack, note["id"]), timeout=20)
    for message, value, headers in sent:
        data = message["data"]
        assert data["event_type"] == NEUTRAL_CATEGORY and data["withheld_fields"] == []
        assert data["sealed"] is None and data["payload"] == {}
        assert headers[ADDRESSEE_HEADER] == REST_ONLY.encode()
        _names_no_pregnancy(value, headers)
    rest = Api(stack, "migrant_exchange", f"reg-{REST_ONLY}")
    fetched = rest.get(f"/v1/notifications/{note['id']}")
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["event_type"] == "pregnancy.registered.v1"
    assert fetched.json()["payload"]["mother_id_number"] == mother
    answered = rest.post(f"/v1/notifications/{note['id']}/feedback", {"outcome": "applied"})
    assert answered.status_code == 200 and answered.json()["state"] == "applied", answered.text


def test_nothing_addressed_to_320412_is_in_clear_on_the_broker(stack: Stack) -> None:
    _pregnancy_for_origin(stack)  # at least one sensitive notification for 320412 is on the topic
    values = wait_until(
        lambda: [
            v
            for v, _ in read_topic(stack, "exchange.notification.v1")
            if orjson.loads(v)["data"]["target_division"] == ORIGIN
        ],
        timeout=20,
    )
    for value in values:
        data = orjson.loads(value)["data"]
        assert data["payload"] == {}, data["event_type"]
        assert b"pregnan" not in value.lower(), "a notification names a pregnancy on the broker"
        assert not ID_NUMBER.search(value), "an identity number in clear on the broker"
        if data["sealed"] is not None:
            sealed = SealedPayload.model_validate(data["sealed"])
            aad = notification_aad(data["notification_id"], ORIGIN, data["event_type"])
            with pytest.raises(CannotOpen):
                open_sealed(sealed, stack.trust.keyring(DESTINATION).decryption_keys(DESTINATION), aad)
