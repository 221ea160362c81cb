"""Dead letters, replay, and a consumer killed in the middle of a batch of 5,000 events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from devstack.embedded import env_with
from devstack.stack import ROOT, Stack
from tests.exchange.exchange_helpers import A, B, event, new_person, person_event, produce
from tests.helpers import medical_certificate, metric, query, signed, wait_until

pytestmark = pytest.mark.e2e


def _dlq_messages(stack: Stack, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    async def read() -> list[tuple[bytes, dict[str, bytes]]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=stack.bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            batches = await consumer.getmany(timeout_ms=2000)
            return [(m.value or b"", dict(m.headers or ())) for part in batches.values() for m in part]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _cli(stack: Stack, *args: str) -> tuple[int, Any]:
    """``exchangectl dlq ARGS -s migrant_exchange --json`` in a process of its own: exit code, output."""
    env = env_with(kafka_bootstrap_servers=stack.bootstrap, log_json="false")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "dlq",
            *args,
            "--service",
            "migrant_exchange",
            "--stack",
            str(stack.run_dir / "stack.json"),  # its database and trust list (a letter is checked anew)
            "--json",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr


def test_a_poison_message_is_dead_lettered_and_the_next_one_applied(xstack: Stack) -> None:
    mother = new_person()
    birth = {
        "birth_id": str(uuid.uuid4()),
        "medical_certificate_number": medical_certificate(),
        "child_name": "王小二",
        "child_sex": "M",
        "child_birth_date": "2026-02-01",
        "mother_id_number": mother,
        "birth_order": 1,
        "birth_division": A,
    }
    valid = event("birth.registered.v1", A, birth, person_event(mother, A, B, A).subject, 1, origin=B)
    poison = b'{"specversion": "1.0", "type": "birth.registered.v1", "data": {"id_number": "garbage"'
    produce(xstack, [("vital.birth.v1", poison), ("vital.birth.v1", valid)], raw_key=valid.subject.encode())
    exchange_db = xstack.service("migrant_exchange").dsn

    notes = wait_until(
        lambda: query(exchange_db, "SELECT * FROM notifications WHERE event_id = $1", valid.id), timeout=10
    )
    assert notes[0]["target_division"] == B
    dead = wait_until(
        lambda: query(exchange_db, "SELECT * FROM dead_letters WHERE value = $1", poison), timeout=10
    )
    assert dead[0]["topic"] == "vital.birth.v1" and "JSONDecodeError" in dead[0]["reason"]
    on_dlq = wait_until(
        lambda: [h for v, h in _dlq_messages(xstack, "vital.birth.v1.dlq") if v == poison], timeout=10
    )
    assert on_dlq[0]["dlq_reason"].decode() == dead[0]["reason"]

    code, listed = _cli(xstack, "list")
    assert code == 0 and dead[0]["id"] in [d["id"] for d in listed]
    code, still = _cli(xstack, "replay", str(dead[0]["id"]))
    assert code == 1 and still[0]["replayed"] is False
    assert still[0]["error"] not in (None, "already replayed", "no such dead letter")  # still failing
    assert (
        query(exchange_db, "SELECT replayed_at FROM dead_letters WHERE id = $1", dead[0]["id"])[0][0] is None
    )


def test_a_dead_letter_replays_once_its_cause_is_fixed(xstack: Stack) -> None:
    fixed = person_event(new_person(), A, A, B)
    exchange_db = xstack.service("migrant_exchange").dsn
    # A letter that failed for a reason since fixed: its bytes are a valid, never-applied event.
    row = query(
        exchange_db,
        """INSERT INTO dead_letters (consumer, topic, partition, "offset", key, value, reason)
           VALUES ('migrant-exchange-events', 'vital.person.v1', 0, 0, $1, $2, 'simulated outage') RETURNING id""",
        fixed.subject,
        signed(xstack, fixed),
    )
    code, replayed = _cli(xstack, "replay", str(row[0]["id"]))
    assert code == 0, replayed
    assert [
        r["target_division"]
        for r in query(exchange_db, "SELECT * FROM notifications WHERE event_id = $1", fixed.id)
    ] == [B]
    assert (
        query(exchange_db, "SELECT replayed_at FROM dead_letters WHERE id = $1", row[0]["id"])[0][0]
        is not None
    )
    assert _cli(xstack, "replay", str(row[0]["id"])) == (  # once
        1,
        [{"id": row[0]["id"], "replayed": False, "error": "already replayed"}],
    )


def _exchange_effects(dsn: str, ids: list[uuid.UUID]) -> dict[str, object]:
    """What the exchange did about these events: its notification rows and the events it queued."""
    return {
        "notifications": [
            dict(r)
            for r in query(
                dsn, "SELECT * FROM notifications WHERE event_id = ANY($1::uuid[]) ORDER BY id", ids
            )
        ],
        "queued": query(
            dsn,
            """SELECT id FROM outbox WHERE event_type = 'exchange.notification.v1'
                 AND (convert_from(value, 'UTF8')::jsonb -> 'data' ->> 'event_id')::uuid = ANY($1::uuid[])
               ORDER BY id""",
            ids,
        ),
    }


def _redelivery_is_consumed_without_effect(stack: Stack, events: list[Any]) -> None:
    """Send events the exchange already applied once more (a relay re-sending after a broker
    reset): the exchange reads each, finds it in its inbox, skips it, and nothing changes."""
    exchange = stack.service("migrant_exchange")
    ids = [e.id for e in events]
    before = _exchange_effects(exchange.dsn, ids)
    consumer = "migrant-exchange-events"
    skipped = metric(exchange.url, "inbox_duplicates_total", consumer=consumer)
    produce(stack, [("vital.person.v1", e) for e in events])
    wait_until(
        lambda: metric(exchange.url, "inbox_duplicates_total", consumer=consumer) >= skipped + len(events),
        timeout=60,
        interval=0.2,
    )
    assert _exchange_effects(exchange.dsn, ids) == before


def test_killing_the_exchange_mid_batch_leaves_every_notification_exactly_once(xstack: Stack) -> None:
    events = [person_event(new_person(200_000 + i), A, A, B) for i in range(5000)]
    ids = [e.id for e in events]
    exchange = xstack.service("migrant_exchange")
    count = "SELECT count(*) AS n FROM notifications WHERE event_id = ANY($1::uuid[])"
    # Produced while the exchange works and is killed: it keeps pace with a producer that signs
    # each event, so a kill after the whole stream was produced could come after the last batch.
    producing = threading.Thread(target=produce, args=(xstack, [("vital.person.v1", e) for e in events]))
    producing.start()

    wait_until(lambda: query(exchange.dsn, count, ids)[0]["n"] >= 300, timeout=60, interval=0.02)
    assert exchange.process is not None
    os.killpg(exchange.process.pid, signal.SIGKILL)  # no graceful shutdown, mid-batch
    exchange.process.wait(10)
    partial = query(exchange.dsn, count, ids)[0]["n"]
    producing.join(60)
    assert not producing.is_alive()
    assert partial < 5000, "the kill came too late to prove anything"
    started = time.monotonic()
    xstack.spawn(exchange)
    # The killed member never left its group: the new one is assigned once the broker gave up
    # on it (its session, and on Tansu a join round more; see docs/reliability.md).
    xstack.wait_ready(exchange, timeout=60)
    ready = time.monotonic() - started

    # No omission: every event got its notification (a second one is what the unique
    # constraint on (event_id, target) forbids, so it is not counted here).
    wait_until(lambda: query(exchange.dsn, count, ids)[0]["n"] == 5000, timeout=120, interval=0.5)
    notified = time.monotonic() - started
    # Each notification was queued for Kafka as often as it was attempted: no phantom re-sends.
    mismatched = query(
        exchange.dsn,
        """SELECT n.id FROM notifications n
           LEFT JOIN (SELECT (convert_from(value, 'UTF8')::jsonb -> 'data' ->> 'notification_id')::uuid AS nid,
                             count(*) AS c FROM outbox WHERE event_type = 'exchange.notification.v1' GROUP BY 1) o
             ON o.nid = n.id
           WHERE n.event_id = ANY($1::uuid[]) AND coalesce(o.c, 0) <> n.attempts""",
        ids,
    )
    assert mismatched == []
    # And the destination applied each exactly once and answered.
    applied = "SELECT count(*) FROM notifications WHERE event_id = ANY($1::uuid[]) AND state = 'applied'"
    wait_until(lambda: query(exchange.dsn, applied, ids)[0][0] == 5000, timeout=120, interval=0.5)
    _redelivery_is_consumed_without_effect(xstack, events[:300])
    print(
        f"after the kill ({partial} done before it): ready {ready:.1f}s, all notified {notified:.1f}s,"
        f" all applied {time.monotonic() - started:.1f}s"
    )
