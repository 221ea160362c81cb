"""Event contracts: the CloudEvents envelope, versioned payloads and the type catalogue."""

from shared.events.catalog import CATALOG, TOPICS, EventSpec, parse_event, spec_for, topic_for
from shared.events.envelope import Envelope, new_event_id
from shared.events.payloads import *  # noqa: F403

__all__ = [
    "CATALOG",
    "TOPICS",
    "Envelope",
    "EventSpec",
    "new_event_id",
    "parse_event",
    "spec_for",
    "topic_for",
]
