"""Which payload and topic belong to each event type, and how raw messages are parsed."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel

from shared.events import payloads as p
from shared.events.envelope import AnyEnvelope, Envelope
from shared.events.upcasting import UPCASTERS, upcast_data
from shared.jsontypes import JsonObject

PayloadType = type[BaseModel]  # named outside the class: its field ``type`` shadows the builtin there


@dataclass(frozen=True)
class EventSpec:
    type: str
    topic: str
    payload: PayloadType

    @property
    def dataschema(self) -> str:
        return f"urn:migrant-exchange:schema:{self.type}"


_SPECS = [
    EventSpec("person.registered.v1", "vital.person.v1", p.PersonRegisteredV1),
    EventSpec("marriage.registered.v1", "vital.marriage.v1", p.MarriageRegisteredV1),
    EventSpec("marriage.dissolved.v1", "vital.marriage.v1", p.MarriageDissolvedV1),
    EventSpec("migration.departed.v1", "vital.migration.v1", p.MigrationDepartedV1),
    EventSpec("migration.arrived.v1", "vital.migration.v1", p.MigrationArrivedV1),
    EventSpec("migration.returned.v1", "vital.migration.v1", p.MigrationReturnedV1),
    EventSpec("pregnancy.registered.v1", "vital.pregnancy.v1", p.PregnancyRegisteredV1),
    EventSpec("pregnancy.closed.v1", "vital.pregnancy.v1", p.PregnancyClosedV1),
    EventSpec("birth.registered.v1", "vital.birth.v1", p.BirthRegisteredV1),  # upcast to v2
    EventSpec("birth.registered.v2", "vital.birth.v1", p.BirthRegisteredV2),
    EventSpec("record.corrected.v1", "vital.correction.v1", p.RecordCorrectedV1),
    EventSpec("certificate.issued.v1", "certificate.lifecycle.v1", p.CertificateIssuedV1),
    EventSpec("certificate.revoked.v1", "certificate.lifecycle.v1", p.CertificateRevokedV1),
    EventSpec("exchange.notification.v1", "exchange.notification.v1", p.ExchangeNotificationV1),
    EventSpec("exchange.feedback.v1", "exchange.feedback.v1", p.ExchangeFeedbackV1),
    EventSpec("exchange.feedback_batch.v1", "exchange.feedback.v1", p.ExchangeFeedbackBatchV1),
    EventSpec("disclosure.recorded.v1", "audit.disclosure.v1", p.DisclosureRecordedV1),
    EventSpec("disclosure.batch.v1", "audit.disclosure.v1", p.DisclosureBatchV1),
]

CATALOG: dict[str, EventSpec] = {s.type: s for s in _SPECS}
TOPICS: tuple[str, ...] = tuple(dict.fromkeys(s.topic for s in _SPECS))
VITAL_TOPICS: tuple[str, ...] = tuple(t for t in TOPICS if t.startswith("vital."))
DISCLOSURE_TOPIC = "audit.disclosure.v1"
DLQ_SUFFIX = ".dlq"
# Every registry reads the whole notification and disclosure topics. The divisions such an event
# is for ride along in this Kafka header too, so a consumer passes over someone else's message
# without decoding it. Only a hint: the signed JSON decides (``shared.consumer_admission``), and a header
# that hides a message from its addressee does no more than a broker dropping it could.
ADDRESSEE_HEADER = "addressee"

# The types producers write: older versions stay in the catalog (consumers meet them, their
# schemas stay published) but are upcast when parsed (shared.events.upcasting).
CURRENT_TYPES: tuple[str, ...] = tuple(t for t in CATALOG if t not in UPCASTERS)


class UnknownEventType(ValueError):
    """The message names a type this build does not know."""


def spec_for(event_type: str) -> EventSpec:
    try:
        return CATALOG[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}") from None


def topic_for(event_type: str) -> str:
    return spec_for(event_type).topic


def addressees(event: AnyEnvelope) -> list[str] | None:
    """The divisions an event of a topic every registry reads is for (None: any other event)."""
    data = event.data
    if isinstance(data, p.ExchangeNotificationV1):
        return [data.target_division]
    if isinstance(data, p.DisclosureRecordedV1 | p.DisclosureBatchV1):
        return list(data.record_at)
    return None


def parse_event(raw: bytes | str | JsonObject) -> AnyEnvelope:
    """Parse a structured-mode CloudEvent into its typed envelope, upcasting older versions
    (the caller verifies the signature over the bytes it received, not over the upcast model).

    Raises ``ValueError`` (pydantic's ``ValidationError`` is one) for anything malformed.
    """
    doc = raw if isinstance(raw, dict) else orjson.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("a CloudEvent must be a JSON object")
    if doc.get("type") in UPCASTERS and isinstance(doc.get("data"), dict):
        event_type, data = upcast_data(doc["type"], doc["data"])
        doc = {**doc, "type": event_type, "dataschema": spec_for(event_type).dataschema, "data": data}
    return envelope_of(str(doc.get("type"))).model_validate(doc)


@functools.cache
def envelope_of(event_type: str) -> type[AnyEnvelope]:
    """``Envelope[payload]`` of a type, made once: pydantic's own cache of parametrised generics
    misses often enough to cost a third of a parse (seen in a replay profile)."""
    generic: Any = Envelope  # parametrised at run time, which a static checker cannot follow
    return generic[spec_for(event_type).payload]  # type: ignore[no-any-return]
