"""Which event types are sensitive per person, and the neutral names operators see instead.

DESIGN.md sections 8 and 10: operators see operations, not people. A pregnancy is sensitive
personal information, so wherever an operator can look (the exchange's notification and
dead-letter listings, the dashboard, every service's metric labels) a pregnancy event's type is
shown as ``NEUTRAL_CATEGORY`` and its topic as ``NEUTRAL_TOPIC``; the registries, which must apply
it, still see the real type. On the topics every registry reads (notifications, disclosures) a
sensitive type travels under ``NEUTRAL_CATEGORY`` as well; a notification's real type is sealed
to its addressee (``shared.sealing``).

A correction of a restricted record (``record.corrected.v1`` whose ``record_type`` is
``pregnancy``) is as restricted as the record: its changes name a due date, its record type says
it outright. ``is_restricted`` is the one rule, by type and data, wherever the data is at hand (a
dead letter's message; a notification as the exchange names and seals it and as its addressee
opens it, ``shared.sealing``; the purpose of its disclosure, ``shared.disclosures.purpose_of``);
where only the type is at hand, ``is_sensitive`` decides.

The neutral name says that an event is restricted, not which kind: today only pregnancy types
are in it, so a reader who knows that learns "a restricted event" and no more than that.
Aggregate counts over the category are allowed (they are operations); names are not.
"""

from __future__ import annotations

import re

# Type and topic prefixes of sensitive events (a new version of a type stays sensitive).
SENSITIVE_TYPE_PREFIXES = ("pregnancy.",)
SENSITIVE_TOPIC_PREFIXES = ("vital.pregnancy.",)
NEUTRAL_CATEGORY = "vital.restricted"
NEUTRAL_TOPIC = "vital.restricted"
NEUTRAL_ROUTE = "/v1/vital.restricted"
_DLQ = ".dlq"
# Any word of free text naming a sensitive kind (type, topic, payload class, table or field).
_SENSITIVE_WORD = re.compile(r"[\w.\-]*pregnan[\w.\-]*", re.IGNORECASE)


# Purposes that say as much as a pregnancy type (maternal care); on a topic every registry reads
# they travel under the neutral name, and the person's own registries read them back as this one.
SENSITIVE_PURPOSES = ("maternal_care", "maternal_care_services")
RESTRICTED_PURPOSE = "maternal_care"


def neutral_purpose(purpose: str) -> str:
    return NEUTRAL_CATEGORY if purpose in SENSITIVE_PURPOSES else purpose


def restored_purpose(purpose: str) -> str:
    """A purpose as the person's own registry records it (only maternal care is restricted)."""
    return RESTRICTED_PURPOSE if purpose == NEUTRAL_CATEGORY else purpose


def is_sensitive(event_type: str) -> bool:
    return event_type.startswith(SENSITIVE_TYPE_PREFIXES)


# The record types whose corrections are restricted, and the correction types that carry one.
SENSITIVE_RECORD_TYPES = ("pregnancy",)
CORRECTION_TYPE_PREFIXES = ("record.corrected.",)


def is_restricted(event_type: str, data: object) -> bool:
    """Whether an event is restricted, given its type and data: a sensitive type, the neutral
    category itself, or a correction of a sensitive record (its ``record_type``, any version)."""
    if is_sensitive(event_type) or event_type == NEUTRAL_CATEGORY:
        return True
    return (
        event_type.startswith(CORRECTION_TYPE_PREFIXES)
        and isinstance(data, dict)
        and data.get("record_type") in SENSITIVE_RECORD_TYPES
    )


def neutral_event_type(event_type: str, data: object) -> str:
    """The event type an operator may see of an event whose data is at hand (``is_restricted``)."""
    return NEUTRAL_CATEGORY if is_restricted(event_type, data) else event_type


def neutral_type(event_type: str) -> str:
    """The event type an operator may see."""
    return NEUTRAL_CATEGORY if is_sensitive(event_type) else event_type


def neutral_topic(topic: str) -> str:
    """The topic an operator may see; a dead-letter topic keeps its suffix."""
    if not topic.startswith(SENSITIVE_TOPIC_PREFIXES):
        return topic
    return NEUTRAL_TOPIC + _DLQ if topic.endswith(_DLQ) else NEUTRAL_TOPIC


def neutral_label(value: str) -> str:
    """A metric label value that may be an event type or a topic."""
    return neutral_topic(neutral_type(value))


def neutral_text(text: str) -> str:
    """Free text (a dead-letter or rejection reason) with every sensitive name replaced."""
    return _SENSITIVE_WORD.sub(NEUTRAL_CATEGORY, text)


# A path into an event's data in a reason ("data.changes.expected_delivery: ..."): a validation
# error names the fields it refused.
_DATA_PATH = re.compile(r"\bdata((?:\.[\w\-\[\]]+)+)")


def neutral_reason(text: str, restricted: bool) -> str:
    """A dead letter's reason as it is kept: neutral (``neutral_text``) and, for a restricted
    event's message, without the names of its data's fields (a due date says which kind it was)."""
    text = neutral_text(text)
    return _DATA_PATH.sub("data", text) if restricted else text


def neutral_route(template: str) -> str:
    """A route template for a metric label: the pregnancy routes share one neutral name."""
    return NEUTRAL_ROUTE if _SENSITIVE_WORD.search(template) else template


# What an answer to a restricted notification says in place of its conflicting fields.
FIELDS_WITHHELD = "(its fields withheld)"
# A restricted record's own field in a reason, in any spelling (a field, or the rule that refused
# it: "expected-delivery-plausible"): it says which kind the notification was, as the field did.
_RESTRICTED_FIELD = re.compile(r"[\w.\-]*expected[_\-]delivery[\w.\-]*", re.IGNORECASE)


def withheld_reason(reason: str | None, had_conflicts: bool) -> str | None:
    """The reason of an answer to a restricted notification (``exchange.feedback.v1``) as it may
    travel, which then gives no conflicting field: the answer lies on the broker beside her
    subject key, where a differing ``expected_delivery`` with both values, or a reason speaking of
    "the pregnancy", would say what her notification's neutral name does not. The reason is
    neutral (``neutral_text``) and says that the fields were withheld when there were some: the
    answering registry's own record keeps its value, the sender's its own. A rule that refused it
    may name the field (``expected-delivery-plausible``): neutral too."""
    text = _RESTRICTED_FIELD.sub(NEUTRAL_CATEGORY, neutral_text(reason or "")).strip()
    if had_conflicts:
        return f"{text} {FIELDS_WITHHELD}" if text else FIELDS_WITHHELD
    return None if reason is None else text
