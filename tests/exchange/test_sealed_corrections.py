"""A correction of a pregnancy travels on the broker as the restricted event it is.

DESIGN.md section 10: pregnancy data is readable by the person's own two registries and nobody
else, broker readers included. Every registry reads the whole notification topic and can compute
the subject key of anyone whose identity number it knows, so a notification of a pregnancy names
only ``vital.restricted`` in clear and seals its real type and withheld fields. A correction of a
pregnancy (``record.corrected.v1`` whose ``record_type`` is pregnancy) says as much: its type
beside her key says that a record of hers was corrected, and its changes (``expected_delivery``)
which. It is restricted by the same rule (``shared.sensitivity.is_restricted``), so it travels
under the neutral name as well; its target still applies it (its copy of the pregnancy changes),
and a REST-only target reads the real type over REST, answers there, and its pick-up is audited
under the purpose of a pregnancy's disclosure, maternal care.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest

from devstack.stack import Stack
from shared.events.catalog import ADDRESSEE_HEADER
from shared.events.payloads import SealedPayload
from shared.sealing import notification_aad, notification_contents, open_sealed
from shared.sensitivity import NEUTRAL_CATEGORY
from tests.exchange.exchange_helpers import (
    OFFLINE,
    A,
    B,
    ok,
    pregnancy_registered,
    registry_api,
    rest_only_client,
)
from tests.helpers import query, read_topic, wait_until

pytestmark = pytest.mark.e2e
# What would tell a reader of the topic that a pregnancy was corrected.
TELLING = (b"record.corrected", b"expected_delivery", b"record_type", b"pregnan")


def _sent(stack: Stack, notification_id: object) -> list[tuple[dict[str, Any], bytes, dict[str, bytes]]]:
    """Every send of one notification on the broker: the message, its bytes and its headers."""
    return [
        (m, v, h)
        for v, h in read_topic(stack, "exchange.notification.v1")
        if (m := orjson.loads(v))["data"]["notification_id"] == str(notification_id)
    ]


def _told(value: bytes, headers: dict[str, bytes]) -> list[bytes]:
    """What the message says in clear of a corrected pregnancy (empty: nothing)."""
    seen = value.lower() + b" ".join(headers.values()).lower()
    return [word for word in TELLING if word in seen]


def _her_pregnancy_corrected_at_a(stack: Stack, hukou: str) -> tuple[str, str, str]:
    """A woman of ``hukou`` living at A: A registers her pregnancy (``hukou`` is told), then
    corrects its due date. Her identity number, the pregnancy id and the correction's event id."""
    her, pregnancy = pregnancy_registered(stack, A, hukou)
    exchange_db = stack.service("migrant_exchange").dsn
    wait_until(
        lambda: query(
            exchange_db,
            "SELECT 1 FROM notifications WHERE event_id = $1 AND target_division = $2",
            uuid.UUID(str(pregnancy["event_id"])),
            hukou,
        ),
        timeout=15,
    )
    body = {
        "corrected_event_id": str(pregnancy["event_id"]),
        "record_type": "pregnancy",
        "record_id": str(pregnancy["pregnancy_id"]),
        "changes": {"expected_delivery": "2026-10-27"},
        "reason": "misread from the form",
    }
    return (
        her,
        str(pregnancy["pregnancy_id"]),
        str(ok(registry_api(stack, A).post("/v1/corrections", body))["event_id"]),
    )


def test_a_corrected_pregnancy_is_named_only_by_the_neutral_category_and_applied_at_its_target(
    xstack: Stack,
) -> None:
    """B, her hukou, holds a copy of her pregnancy; A corrects its due date. On the broker the
    correction's notification to B names ``vital.restricted``, no withheld field, nothing that says
    a correction or a pregnancy; inside B's seal, the real type and the correction. B applies it:
    its copy of the pregnancy now has the new due date, and its answer closed the notification."""
    _, pregnancy_id, fixed = _her_pregnancy_corrected_at_a(xstack, hukou=B)
    b_db = xstack.service(f"registry-{B}").dsn
    wait_until(
        lambda: query(b_db, "SELECT 1 FROM pregnancies WHERE id = $1", uuid.UUID(pregnancy_id)), timeout=15
    )
    exchange_db = xstack.service("migrant_exchange").dsn
    [note] = wait_until(
        lambda: query(
            exchange_db,
            "SELECT id, event_type FROM notifications WHERE event_id = $1 AND target_division = $2 "
            "AND state = 'applied'",
            uuid.UUID(fixed),
            B,
        ),
        timeout=20,
    )
    assert note["event_type"] == "record.corrected.v1"  # the exchange's own row keeps the real type
    [kept] = query(b_db, "SELECT expected_delivery FROM pregnancies WHERE id = $1", uuid.UUID(pregnancy_id))
    assert kept["expected_delivery"] == dt.date(2026, 10, 27)  # the far side applied the correction

    sent = _sent(xstack, note["id"])
    assert sent, "the correction's notification is on the broker"
    keys = xstack.trust.keyring(B).decryption_keys(B)
    for message, value, headers in sent:
        data = message["data"]
        assert headers[ADDRESSEE_HEADER] == B.encode()
        assert (data["event_type"], data["withheld_fields"]) == (NEUTRAL_CATEGORY, []), data["event_type"]
        assert not _told(value, headers), _told(value, headers)
        assert data["payload"] == {} and data["sealed"] is not None
        sealed = SealedPayload.model_validate(data["sealed"])
        aad = notification_aad(data["notification_id"], B, data["event_type"])
        event_type, withheld, payload = notification_contents(
            open_sealed(sealed, keys, aad), data["event_type"], data["withheld_fields"]
        )
        assert (event_type, withheld) == ("record.corrected.v1", [])
        assert payload["record_type"] == "pregnancy" and payload["changes"] == {
            "expected_delivery": "2026-10-27"
        }


def test_a_rest_only_target_reads_a_corrected_pregnancy_over_rest_under_maternal_care(xstack: Stack) -> None:
    """510104 (no registry on Kafka) holds her pregnancy; A corrects it. On the broker its
    notification names only the neutral category; 510104's client reads the real type with the
    payload over REST and answers it ``applied``. The pick-up is audited under the purpose a
    pregnancy's data is disclosed for, maternal care, as its disclosure to her registries says."""
    offline = rest_only_client(xstack, "sealed-corrections-510104")
    her, _, fixed = _her_pregnancy_corrected_at_a(xstack, hukou=OFFLINE)
    exchange_db = xstack.service("migrant_exchange").dsn
    [note] = wait_until(
        lambda: query(
            exchange_db,
            "SELECT id FROM notifications WHERE event_id = $1 AND target_division = $2",
            uuid.UUID(fixed),
            OFFLINE,
        ),
        timeout=20,
    )
    sent = wait_until(lambda: _sent(xstack, note["id"]), timeout=20)
    for message, value, headers in sent:
        data = message["data"]
        assert (data["event_type"], data["withheld_fields"]) == (NEUTRAL_CATEGORY, []), data["event_type"]
        assert data["payload"] == {} and not _told(value, headers), _told(value, headers)

    fetched = wait_until(
        lambda: (
            r.json() if (r := offline.get(f"/v1/notifications/{note['id']}")).status_code == 200 else None
        ),
        timeout=10,
    )
    assert fetched["event_type"] == "record.corrected.v1"
    assert fetched["payload"]["record_type"] == "pregnancy"
    assert fetched["payload"]["changes"] == {"expected_delivery": "2026-10-27"}
    answered = offline.post(f"/v1/notifications/{note['id']}/feedback", json={"outcome": "applied"})
    assert answered.status_code == 200 and answered.json()["state"] == "applied", answered.text

    [audited] = query(
        exchange_db,
        "SELECT purpose FROM audit_log WHERE action = 'notification.fetched' "
        "AND detail->>'notification_id' = $1",
        str(note["id"]),
    )
    assert audited["purpose"] == "maternal_care"
    # Her registries are told the same purpose; on the topic every registry reads, it and the
    # type beside it are the neutral category (a correction "for maternal care" would say which).
    told = wait_until(
        lambda: [
            entry
            for value, _ in read_topic(xstack, "audit.disclosure.v1")
            for entry in orjson.loads(value)["data"].get("entries", [])
            if entry.get("notification_id") == str(note["id"]) and entry["action"] == "notification.fetched"
        ],
        timeout=15,
    )
    assert {(e["purpose"], e["event_type"]) for e in told} == {(NEUTRAL_CATEGORY, NEUTRAL_CATEGORY)}
    assert her not in str(told)
