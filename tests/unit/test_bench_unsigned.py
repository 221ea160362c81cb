"""``bench/unsigned`` (``bench.trust_cost``'s tree without signing and checking) still switches
off what the services actually call: there an unsigned event passes a consumer's admission and
the relay's signing returns events as written; the unmodified tree refuses the same event.
Otherwise the benchmark's "off" variant would refuse every event and measure nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import asyncio, datetime as dt, uuid, orjson
from aiokafka import ConsumerRecord
from shared.consumer import EventConsumer
from shared.events import payloads as p
from shared.events.signature import Rejected
from shared.outbox import make_event
from shared.outbox_relay import sign_outgoing_batch
from shared.settings import BaseServiceSettings

event = make_event(
    event_type="record.corrected.v1", source="/registry/440703", subject="0" * 32, sequence=1,
    data=p.RecordCorrectedV1(correction_id=uuid.uuid4(), corrected_event_id=uuid.uuid4(),
                             record_type="person", record_id="p1", changes={"name": "x"}, reason="typo"),
)
value = event.model_dump_json().encode()
consumer = EventConsumer(None, BaseServiceSettings(service_name="probe"), name="probe",
                         topics=["vital.correction.v1"], handler=None)
try:
    consumer.check(event, orjson.loads(value))
except Rejected:
    print("refused")
else:
    assert sign_outgoing_batch(None, [value], dt.datetime.now(dt.UTC)) == [value]
    msg = ConsumerRecord("vital.correction.v1", 0, 0, 0, 0, b"k", value, None, 1, len(value), [])
    admitted = asyncio.run(consumer._admit(None, msg, orjson.loads(value), False))
    print("admitted" if admitted is not None and admitted.id == event.id else "dropped")
"""


def _probe(*path: Path) -> str:
    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={"PYTHONPATH": ":".join(str(p) for p in (*path, ROOT)), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.strip()


def test_the_unsigned_tree_admits_an_unsigned_event_that_the_real_one_refuses() -> None:
    assert _probe(ROOT / "bench" / "unsigned") == "admitted"
    assert _probe() == "refused"
