"""No raw identity number in any log line, metric label or Kafka key, during the whole run so far.

The test first drives every kind of write and read (including refused ones whose URL or body
carries an identity number), waits for the exchange to deliver, then scans: every log file the
stack wrote, every service's /metrics, and every topic from the beginning (keys, headers and the
envelope outside ``data``) for the identity numbers of all people in the registries' records and
for anything shaped like one. Logs of the other stacks the session started (under the same work
directory) are scanned too. The ``zz`` in the file name makes it run after the other e2e tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import Api, medical_certificate, person_id, query, wait_until

pytestmark = pytest.mark.e2e

ID_SHAPE = re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")


def _born(n: str) -> str:
    return f"{n[6:10]}-{n[10:12]}-{n[12:14]}"


def _exercise(stack: Stack) -> list[str]:
    origin = Api(stack, f"registry-{ORIGIN}", f"reg-{ORIGIN}")
    dest = Api(stack, f"registry-{DESTINATION}", f"reg-{DESTINATION}")
    kiosk = Api(stack, "verification", f"kiosk-{DESTINATION}")
    mother, father = person_id("F"), person_id("M")
    for who, sex in ((mother, "F"), (father, "M")):
        body = {
            "id_number": who,
            "name": "隐私",
            "sex": sex,
            "birth_date": _born(who),
            "hukou_division": ORIGIN,
        }
        assert origin.post("/v1/persons", body).status_code == 201
        assert origin.post("/v1/persons", body).status_code == 409  # refused, with the number in the body
        r = origin.post(
            "/v1/migrations",
            {
                "kind": "departed",
                "id_number": who,
                "from_division": ORIGIN,
                "to_division": DESTINATION,
                "migration_date": "2025-01-02",
            },
        )
        assert r.status_code == 201, r.text
    dest_db = stack.service(f"registry-{DESTINATION}").dsn
    wait_until(
        lambda: (
            len(query(dest_db, "SELECT 1 FROM persons WHERE id_number = ANY($1::text[])", [mother, father]))
            == 2
        )
    )
    assert (
        dest.post(
            "/v1/marriages",
            {"spouse_a_id_number": father, "spouse_b_id_number": mother, "marriage_date": "2025-02-02"},
        ).status_code
        == 201
    )
    assert (
        dest.post("/v1/pregnancies", {"mother_id_number": mother, "registered_on": "2025-03-01"}).status_code
        == 201
    )
    child = person_id("F", dt.date(2025, 10, 1))
    birth = dest.post(
        "/v1/births",
        {
            "medical_certificate_number": medical_certificate(),
            "child_name": "小隐",
            "child_sex": "F",
            "child_birth_date": "2025-10-01",
            "child_id_number": child,
            "mother_id_number": mother,
            "father_id_number": father,
        },
    )
    assert birth.status_code == 201, birth.text
    person_fix = {
        "corrected_event_id": str(uuid.uuid4()),
        "record_type": "person",
        "record_id": mother,
        "changes": {"name": "改名"},
        "reason": "wrong event on purpose",
    }
    assert origin.post("/v1/corrections", person_fix).status_code == 422
    cert = origin.post("/v1/certificates", {"holder_id_number": mother}).json()
    for who in (mother, person_id("M")):
        kiosk.post(
            "/v1/verifications",
            {
                "certificate_number": cert["certificate_number"],
                "holder_id_number": who,
                "purpose": "arrival_registration",
            },
        )
    # Refused and unknown reads with an identity number in the URL.
    assert origin.get(f"/v1/persons/{person_id()}", purpose="registration").status_code == 404
    wrong_check_digit = mother[:-1] + ("1" if mother[-1] != "1" else "2")
    assert origin.get(f"/v1/persons/{wrong_check_digit}", purpose="registration").status_code in (404, 422)
    assert origin.get(f"/v1/persons/{mother}", purpose="no-such-purpose").status_code == 422
    assert dest.get(f"/v1/persons/{mother}/disclosures").status_code == 200
    return [mother, father, child]


def _known_numbers(stack: Stack) -> set[str]:
    numbers: set[str] = set()
    for svc in stack.services:
        if not svc.name.startswith("registry-"):
            continue
        for sql in (
            "SELECT id_number AS n FROM persons",
            "SELECT mother_id_number AS n FROM births UNION SELECT father_id_number FROM births "
            "UNION SELECT child_id_number FROM births",
        ):
            numbers |= {r["n"] for r in query(svc.dsn, sql) if r["n"]}
    return numbers


async def _topic_messages(
    bootstrap: str,
) -> list[tuple[str, bytes | None, list[tuple[str, bytes]], bytes | None]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(await admin.list_topics())
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,  # every partition, no group to join
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out = []
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            records = [m for part in batch.values() for m in part]
            idle = 0 if records else idle + 1
            out += [(m.topic, m.key, list(m.headers), m.value) for m in records]
    finally:
        await consumer.stop()
    return out


def test_no_raw_identity_number_in_logs_metrics_or_kafka_keys(stack: Stack, workdir: Path) -> None:
    created = _exercise(stack)
    for svc in stack.services:  # let every outbox drain, so the topics hold everything written
        wait_until(
            lambda s=svc: not query(s.dsn, "SELECT 1 FROM outbox WHERE published_at IS NULL"), timeout=10
        )
    numbers = _known_numbers(stack) | set(created)
    assert set(created) <= numbers

    logs = sorted(
        {*(stack.run_dir / "logs").glob("*.log"), *workdir.glob("*/logs/*.log"), *workdir.glob("*.log")}
    )
    assert any(p.name.startswith("registry-") for p in logs)
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        leaked = [n for n in numbers if n in text]
        assert not leaked, f"{path.name} contains {len(leaked)} raw identity numbers"
        if "broker" not in path.name:
            assert not ID_SHAPE.search(text), f"{path.name} has an identity-number-shaped string"

    for svc in stack.services:
        metrics = httpx.get(svc.url + "/metrics", timeout=5).text
        labels = " ".join(re.findall(r"\{[^}]*\}", metrics))  # values are floats; labels are what matter
        assert not ID_SHAPE.search(labels), f"{svc.name} /metrics has an identity-number-shaped label"
        assert not [n for n in numbers if n in metrics], f"{svc.name} /metrics names a person"

    messages = asyncio.run(_topic_messages(stack.bootstrap))
    topics = {m[0] for m in messages}
    assert {
        "vital.person.v1",
        "vital.migration.v1",
        "vital.marriage.v1",
        "exchange.notification.v1",
    } <= topics
    for topic, key, headers, value in messages:
        key_text = (key or b"").decode(errors="replace")
        assert not ID_SHAPE.search(key_text), f"raw identity number as a key on {topic}"
        header_text = " ".join(k + "=" + v.decode(errors="replace") for k, v in headers)
        assert not ID_SHAPE.search(header_text), f"raw identity number in a header on {topic}"
        try:
            envelope = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            continue
        if isinstance(envelope, dict):
            outside_data = orjson.dumps({k: v for k, v in envelope.items() if k != "data"}).decode()
            assert not ID_SHAPE.search(outside_data), f"raw identity number outside data on {topic}"
