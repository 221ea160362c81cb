"""Test kit of the consumer tests: corrections signed by a registry key the trust list holds.

``record.corrected.v1`` from registry 440703 is an event any consumer may be given; these tests
only need it well signed (or signed and then altered), not routed anywhere.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson

from shared import signing
from shared.events import payloads as p
from shared.events.envelope import Envelope, new_event_id
from shared.events.signature import sign_value
from shared.trust import DivisionTrust, PublicKey, TrustList

TOPIC = "vital.correction.v1"
KID, KEY = "440703-test", signing.new_private_key()
TRUST = TrustList(
    divisions={
        "440703": DivisionTrust(
            signing_keys=[PublicKey(kid=KID, public_key=signing.b64u(signing.public_bytes(KEY)))]
        )
    }
)


def signed_correction(
    sequence: int, reason: str, event_id: uuid.UUID | None = None, /, **altered: Any
) -> tuple[uuid.UUID, bytes]:
    """A correction's id and its bytes as published, signed with ``KEY``; its reason says what the
    test makes of it. ``altered`` envelope attributes are set in the JSON after validation (to
    make it malformed, ``sequence`` among them) and signed as they are."""
    event = Envelope[p.RecordCorrectedV1](
        id=event_id or new_event_id(),
        source="/registry/440703",
        type="record.corrected.v1",
        subject="0" * 32,
        time=dt.datetime.now(dt.UTC),
        dataschema="urn:test",
        sequence=sequence,
        data=p.RecordCorrectedV1(
            correction_id=uuid.uuid4(),
            corrected_event_id=uuid.uuid4(),
            record_type="person",
            record_id="p1",
            changes={"name": "甲"},
            reason=reason,
        ),
    )
    return event.id, sign_value(orjson.dumps(orjson.loads(event.model_dump_json()) | altered), KID, KEY)
