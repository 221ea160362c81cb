"""The published contracts, generated from the event models: a JSON Schema per payload version
and an AsyncAPI 3 document of every channel (topics and their dead-letter queues).

Everything here is derived from ``shared.events.catalog``: an event type added to the catalog
is in the documents at once, nothing is listed by hand. Each service serves them
(``shared.contracts_routes``) and ``docs/contracts/`` holds them as written by
``python -m shared.events.contracts write`` (``make contracts``); a test fails when that copy is
stale. An event's ``dataschema`` is its payload schema's ``$id``, and ``GET /v1/schemas/{type}``
(or ``docs/contracts/schemas/{type}.json``) resolves it.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.events import payloads as p
from shared.events.catalog import CATALOG, DLQ_SUFFIX, TOPICS, EventSpec, spec_for
from shared.events.envelope import Envelope
from shared.events.upcasting import UPCASTERS, current_type
from shared.jsontypes import JsonObject
from shared.kafka import AUDIT_CHECKPOINT_TOPIC

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_ID = "urn:migrant-exchange:schema:cloudevent"
ASYNCAPI_VERSION = "3.0.0"
CONTRACT_VERSION = "1.2.0"  # raised with every change of a payload or channel
DOCS = Path(__file__).resolve().parents[2] / "docs" / "contracts"
COMPONENTS = "#/components/schemas/{model}"


def _summary(model: type[BaseModel]) -> str:
    return (model.__doc__ or model.__name__).strip().splitlines()[0]


def _notes(spec: EventSpec) -> JsonObject:
    notes: JsonObject = {"x-event-type": spec.type, "x-topic": spec.topic}
    if spec.type in UPCASTERS:
        notes["x-superseded-by"] = current_type(spec.type)
        notes["deprecated"] = True
    return notes


@functools.cache
def payload_schema(event_type: str) -> JsonObject:
    """The JSON Schema (2020-12) of one payload version; its ``$id`` is the events' ``dataschema``."""
    spec = spec_for(event_type)
    schema = spec.payload.model_json_schema(mode="validation")
    return {"$schema": DRAFT_2020_12, "$id": spec.dataschema, **schema, **_notes(spec)}


def _envelope_properties(schema: JsonObject) -> JsonObject:
    """The envelope's schema with ``data`` left open: each message's payload schema closes it."""
    props = dict(schema["properties"])
    props["data"] = {"type": "object", "description": "the payload; its schema is named by dataschema"}
    out = {k: v for k, v in schema.items() if k != "$defs"}
    out["properties"] = props
    return out


@functools.cache
def envelope_schema() -> JsonObject:
    """The CloudEvents envelope every event travels in (structured JSON mode)."""
    schema = Envelope[p.Payload].model_json_schema(mode="validation")
    return {
        "$schema": DRAFT_2020_12,
        "$id": ENVELOPE_ID,
        **_envelope_properties(schema),
        "title": "CloudEvent",
    }


def _components() -> tuple[dict[str, str], JsonObject]:
    """Payload models as shared AsyncAPI components: type -> component name, and the schemas."""
    models = [(spec.payload, "validation") for spec in CATALOG.values()]
    refs, defs = models_json_schema(models, ref_template=COMPONENTS)  # type: ignore[arg-type]
    names = {t: refs[(s.payload, "validation")]["$ref"].rsplit("/", 1)[-1] for t, s in CATALOG.items()}
    schemas = dict(defs.get("$defs", {}))
    envelope = Envelope[p.Payload].model_json_schema(mode="validation", ref_template=COMPONENTS)
    schemas["CloudEvent"] = _envelope_properties(envelope)
    return names, schemas


def _message(spec: EventSpec, component: str) -> JsonObject:
    payload = spec.payload
    closed = {
        "type": "object",
        "properties": {
            "type": {"const": spec.type},
            "dataschema": {"const": spec.dataschema},
            "data": {"$ref": COMPONENTS.format(model=component)},
        },
    }
    description = (payload.__doc__ or "").strip()
    if spec.type in UPCASTERS:
        description += (
            f"\n\nSuperseded by {current_type(spec.type)}: producers no longer write it; consumers "
            "accept it and upcast it after checking its signature (docs/contracts.md)."
        )
    return {
        "name": spec.type,
        "title": spec.type,
        "summary": _summary(payload),
        "description": description.strip() or spec.type,
        "contentType": "application/cloudevents+json",
        "headers": _HEADERS,
        "payload": {"allOf": [{"$ref": COMPONENTS.format(model="CloudEvent")}, closed]},
        "bindings": {"kafka": {"key": _KEY, "bindingVersion": "0.5.0"}},
    }


_KEY = {"type": "string", "description": "pseudonymous subject key (for a notification: target + subject)"}
_HEADERS = {
    "type": "object",
    "properties": {
        "content-type": {"const": "application/cloudevents+json"},
        "ce_type": {"type": "string", "description": "the event type, as in the envelope"},
        "ce_source": {"type": "string", "description": "the event's source, as in the envelope"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
        "addressee": {
            "type": "string",
            "description": "on notifications and disclosures: the divisions the event is for, comma-separated "
            "(a hint to pass over someone else's message undecoded; the signed event decides)",
        },
    },
}
_DEAD_LETTER = {
    "name": "deadLetter",
    "title": "dead letter",
    "summary": "A message a consumer could not parse, verify or apply, kept as it arrived.",
    "description": "The payload is the original message's bytes (any event of the source topic, or "
    "not an event at all); the headers say which consumer gave up and why. Replayable from the "
    "dashboard or `exchangectl dlq`.",
    "headers": {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": text}
            for name, text in {
                "dlq_reason": "why (field and rule for an invalid event; never a raw value)",
                "dlq_topic": "the topic it came from",
                "dlq_partition": "its partition there",
                "dlq_offset": "its offset there",
                "dlq_consumer": "the consumer group that gave up on it",
                "dlq_service": "the service that gave up on it (the exchange counts every service's)",
                "dlq_id": "the dead letter's id, the same however often it is re-sent",
                "dlq_at": "when it was dead-lettered (ISO 8601)",
            }.items()
        },
        "required": ["dlq_reason", "dlq_topic", "dlq_consumer"],
    },
    "payload": {"description": "the original message, unchanged"},
}


def _channels() -> tuple[JsonObject, JsonObject]:
    channels: JsonObject = {}
    operations: JsonObject = {}
    for topic in TOPICS:
        types = [t for t, s in CATALOG.items() if s.topic == topic]
        channels[topic] = {
            "address": topic,
            "title": topic,
            "description": f"Events {', '.join(types)}; keyed by subject so per-subject order holds.",
            "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in types},
        }
        dlq = topic + DLQ_SUFFIX
        channels[dlq] = {
            "address": dlq,
            "title": dlq,
            "description": f"Dead letters of {topic}.",
            "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
        }
        for action, channel, messages in (
            ("send", topic, types),
            ("receive", topic, types),
            ("send", dlq, ["deadLetter"]),
        ):
            operations[f"{action}-{channel}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": _OPERATION[action].format(channel=channel),
                "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
            }
    return channels, operations


_CHECKPOINT = {
    "name": "auditCheckpoint",
    "title": "audit checkpoint",
    "summary": "A service's audit-chain head, signed (shared.audit_anchor); not a CloudEvent.",
    "description": "A compact JWS (EdDSA) whose claims are typ `audit-checkpoint`, service, seq, "
    "hash (hex) and at; read by `exchangectl audit verify --anchor`. No dead-letter topic.",
    "contentType": "application/jose",
    "payload": {"type": "string", "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$"},
    "bindings": {
        "kafka": {"key": {"type": "string", "description": "the service name"}, "bindingVersion": "0.5.0"}
    },
}


def _checkpoint_channel(channels: JsonObject, operations: JsonObject) -> None:
    channels[AUDIT_CHECKPOINT_TOPIC] = {
        "address": AUDIT_CHECKPOINT_TOPIC,
        "title": AUDIT_CHECKPOINT_TOPIC,
        "description": "Signed audit-chain heads of every service.",
        "messages": {"auditCheckpoint": {"$ref": "#/components/messages/auditCheckpoint"}},
    }
    operations[f"send-{AUDIT_CHECKPOINT_TOPIC}"] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{AUDIT_CHECKPOINT_TOPIC}"},
        "summary": "Published by each service every audit_checkpoint_interval seconds.",
        "messages": [{"$ref": f"#/channels/{AUDIT_CHECKPOINT_TOPIC}/messages/auditCheckpoint"}],
    }


_OPERATION = {
    "send": "Published on {channel} through the producer's transactional outbox; signed by the relay.",
    "receive": "Consumed from {channel}: signature and authority checked, older versions upcast, "
    "applied once (inbox).",
}


@functools.cache
def asyncapi_document() -> JsonObject:
    """The AsyncAPI 3 document of every channel, its messages and their payload schemas."""
    names, schemas = _components()
    channels, operations = _channels()
    _checkpoint_channel(channels, operations)
    messages = {t: _message(spec, names[t]) for t, spec in CATALOG.items()}
    messages |= {"deadLetter": _DEAD_LETTER, "auditCheckpoint": _CHECKPOINT}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:migrant-exchange:events",
        "info": {
            "title": "Migrant-population exchange: events",
            "version": CONTRACT_VERSION,
            "description": "The CloudEvents the registries, the exchange and verification publish "
            "and consume (docs/contracts.md). Payload schemas are generated from shared/events.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "broker": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "a Kafka-protocol broker (Tansu in development)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def documents() -> dict[str, JsonObject]:
    """Every published document by its path under ``docs/contracts``."""
    docs = {"asyncapi.json": asyncapi_document(), "schemas/cloudevent.json": envelope_schema()}
    docs |= {f"schemas/{t}.json": payload_schema(t) for t in CATALOG}
    return docs


def render(doc: JsonObject) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def stale(directory: Path = DOCS) -> list[str]:
    """Paths under ``directory`` that differ from what the models generate (or are missing/extra)."""
    wanted = {name: render(doc) for name, doc in documents().items()}
    present = (
        {str(f.relative_to(directory)) for f in directory.rglob("*.json")} if directory.exists() else set()
    )
    differ = [
        n
        for n, body in wanted.items()
        if not (directory / n).is_file() or (directory / n).read_bytes() != body
    ]
    return sorted(set(differ) | (present - set(wanted)))


def write(directory: Path = DOCS) -> list[str]:
    """Write the documents (and remove ones the catalog no longer holds); the paths changed."""
    changed = stale(directory)
    wanted = documents()
    for name in changed:
        path = directory / name
        if name in wanted:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(render(wanted[name]))
        else:
            path.unlink()
    return changed


def main(argv: list[str]) -> int:
    """``python -m shared.events.contracts write|check [directory]``."""
    command = argv[1] if len(argv) > 1 else "check"
    directory = Path(argv[2]) if len(argv) > 2 else DOCS
    if command == "write":
        changed = write(directory)
        print(
            f"{len(changed)} contract documents written to {directory}" + "".join(f"\n  {c}" for c in changed)
        )
        return 0
    if command == "check":
        changed = stale(directory)
        print("contracts up to date" if not changed else "stale: " + ", ".join(changed))
        return 1 if changed else 0
    print("usage: python -m shared.events.contracts write|check [directory]")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
