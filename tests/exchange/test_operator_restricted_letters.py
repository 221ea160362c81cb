"""A correction of a pregnancy is shown to operators as the restricted event it is.

``exchangectl dlq show`` and the exchange's ``GET /v1/dead-letters`` tell a dead letter by its
shape: its type and its field names, never their values. A pregnancy event is shown as
``vital.restricted`` without its data's field names; a correction of a pregnancy
(``record.corrected.v1``, ``record_type`` pregnancy) says as much by its changes
(``expected_delivery``) and its record type, so it is shown the same way (DESIGN.md sections 8
and 10, ``shared.sensitivity.is_restricted``). So is its notification in the operator's listing,
after its payload, which says what it corrects, was purged.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from devstack.embedded import env_with
from devstack.stack import ROOT, Stack
from shared.sensitivity import NEUTRAL_CATEGORY
from tests.exchange.exchange_helpers import A, B, ok, pregnancy_registered, produce, registry_api
from tests.helpers import query, wait_until

pytestmark = pytest.mark.e2e
TELLING = ("expected_delivery", "record_type", "pregnan")


def _cli(stack: Stack, *args: str) -> Any:
    """``exchangectl dlq ARGS -s migrant_exchange --json`` in a process of its own."""
    stack_file = str(stack.run_dir / "stack.json")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "dlq",
            *args,
            "-s",
            "migrant_exchange",
            "--stack",
            stack_file,
            "--json",
        ],
        env=env_with(kafka_bootstrap_servers=stack.bootstrap, log_json="false"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _told(shown: object) -> list[str]:
    text = json.dumps(shown, ensure_ascii=False, default=str).lower()
    return [word for word in TELLING if word in text]


def test_a_dead_lettered_correction_of_a_pregnancy_is_shown_as_a_restricted_event(xstack: Stack) -> None:
    """A correction of a pregnancy whose new due date is no date: the exchange dead-letters it,
    and its reason names the refused field. The operator sees a restricted event on the
    corrections topic, its envelope's field names and none of its data's, the reason without
    the field's name."""
    poison = json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": f"/registry/{A}",
            "type": "record.corrected.v1",
            "subject": uuid.uuid4().hex,
            "time": "2026-02-01T00:00:00Z",
            "datacontenttype": "application/json",
            "dataschema": "urn:migrant-exchange:schema:record.corrected.v1",
            "sequence": 3,
            "data": {
                "correction_id": str(uuid.uuid4()),
                "corrected_event_id": str(uuid.uuid4()),
                "record_type": "pregnancy",
                "record_id": str(uuid.uuid4()),
                "changes": {"expected_delivery": 20.5},  # neither a string nor a number of days
                "reason": "typed in wrong",
            },
        }
    ).encode()
    produce(xstack, [("vital.correction.v1", poison)])
    exchange_db = xstack.service("migrant_exchange").dsn
    [stored] = wait_until(
        lambda: query(exchange_db, "SELECT id, topic, reason FROM dead_letters WHERE value = $1", poison),
        timeout=15,
    )
    assert stored["topic"] == "vital.correction.v1" and stored["reason"].startswith("invalid event: data")
    assert not _told(stored["reason"]), stored["reason"]  # kept neutral, as the dlq_reason header

    shown = _cli(xstack, "show", str(stored["id"]))
    assert shown["topic"] == "vital.correction.v1" and shown["reason"] == stored["reason"]
    message = shown["message"]
    assert message["type"] == NEUTRAL_CATEGORY and message["data_fields_withheld"] is True
    assert "data" in message["fields"] and "specversion" in message["fields"]
    assert not _told(shown), shown
    [listed] = [d for d in _cli(xstack, "list", "--limit", "100000") if d["id"] == stored["id"]]
    assert listed["reason"] == stored["reason"] and not _told(listed)

    operator = httpx.Client(
        base_url=xstack.service("migrant_exchange").url,
        headers={"Authorization": f"Bearer {xstack.token('operator')}"},
        timeout=10,
    )
    one = operator.get(f"/v1/dead-letters/{stored['id']}")
    assert one.status_code == 200, one.text
    assert one.json()["reason"] == stored["reason"] and not _told(one.json())


def test_the_notification_of_a_corrected_pregnancy_reads_as_a_restricted_event(xstack: Stack) -> None:
    """A woman of B living at A: A registers her pregnancy (B holds it too), then corrects its
    due date. B applies the correction (its payload is purged there and then); the operator's
    listing names it by the neutral category, as it does the registration, while B reads its
    own notification by its real type."""
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()  # only this test's traffic
    _, pregnancy = pregnancy_registered(xstack, A, B)
    body = {
        "corrected_event_id": str(pregnancy["event_id"]),
        "record_type": "pregnancy",
        "record_id": str(pregnancy["pregnancy_id"]),
        "changes": {"expected_delivery": "2026-10-27"},
        "reason": "misread from the form",
    }
    fixed = str(ok(registry_api(xstack, A).post("/v1/corrections", body))["event_id"])
    exchange_db = xstack.service("migrant_exchange").dsn
    wait_until(
        lambda: query(
            exchange_db,
            "SELECT 1 FROM notifications WHERE event_id = $1 AND state = 'applied'",
            uuid.UUID(fixed),
        ),
        timeout=15,
    )

    def listed(token: str) -> dict[str, Any]:
        api = httpx.Client(
            base_url=xstack.service("migrant_exchange").url,
            headers={"Authorization": f"Bearer {xstack.token(token)}"},
            timeout=10,
        )
        r = api.get(
            "/v1/notifications", params={"jurisdiction": B, "state": "applied", "limit": 1000, "after": since}
        )
        assert r.status_code == 200, r.text
        [row] = [n for n in r.json() if n["event_id"] == fixed]
        return dict(row)

    shown = listed("operator")
    assert shown["event_type"] == NEUTRAL_CATEGORY and shown["payload"] is None and shown["subject"] is None
    assert not _told(shown), shown
    assert listed(f"reg-{B}")["event_type"] == "record.corrected.v1"  # the addressee's own view
