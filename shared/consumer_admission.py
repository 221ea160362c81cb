"""What an event consumer lets through, and where what it refuses goes.

Before a handler runs, a message is admitted (``ConsumerAdmission._admit``): someone else's is
passed over, by its addressee header (``addressed_elsewhere``) or its JSON (``addressed``),
without being parsed; the rest must parse, be on its event type's own topic, be wanted
(``accept``), and carry a signature from a sender on the trust list (``trust_list``) with
authority for what it says (``check``). What fails is dead-lettered with its reason, a refused
event counted in ``events_rejected_total`` as well (``reject``). ``ConsumerAdmission`` is part
of ``shared.consumer.EventConsumer``, whose ``__init__`` sets the attributes declared here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord

from shared import dead_letters
from shared.dead_letters import describe_error
from shared.events.catalog import ADDRESSEE_HEADER, parse_event, spec_for
from shared.events.envelope import AnyEnvelope
from shared.events.signature import Rejected, verify_document
from shared.observability import EVENTS_CONSUMED, INBOX_DUPLICATES, labelled
from shared.sensitivity import neutral_label  # metrics name no sensitive type
from shared.trust import Party, TrustList, load_trust_list

Accept = Callable[[AnyEnvelope], bool]
# ``Accept``'s cheap half, on the message's decoded JSON before it is parsed: False when the event
# is certainly not for this consumer. It may raise on a document it cannot read (KeyError,
# TypeError...): the message is then parsed and judged in full.
Addressed = Callable[[dict[str, Any]], bool]
# ``addressed``'s cheaper half, on the message's Kafka headers before its JSON is decoded: True
# when they say for certain that the message is someone else's. Only a hint the producer writes
# (``shared.outbox``): a broker could alter a header, but it could as well drop the message, and a
# message passed over here is not recorded in the inbox.
PassedOver = Callable[[ConsumerRecord[bytes, bytes]], bool]
# Who may send what, from the envelope alone: raises ``Rejected`` (see shared.events.signature).
Authority = Callable[[AnyEnvelope, Party], None]


@lru_cache(maxsize=8)
def trust_list(path: str | None) -> TrustList:
    """The trust list a process verifies with, read once; none configured trusts nobody."""
    return load_trust_list(path) if path else TrustList()


# In place of the decoded JSON of a message whose headers say it is someone else's.
_ELSEWHERE = object()


def addressed_elsewhere(served: frozenset[str]) -> PassedOver:
    """Messages whose addressee header (``ADDRESSEE_HEADER``) names none of the divisions served.
    A message without it (a producer that does not write it) is decoded and judged by its JSON."""

    def elsewhere(msg: ConsumerRecord[bytes, bytes]) -> bool:
        named = header(msg, ADDRESSEE_HEADER)
        return named is not None and served.isdisjoint(named.split(","))

    return elsewhere


def header(msg: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    """The message's header of that name, decoded (None when absent or empty)."""
    for key, value in msg.headers or ():
        if key == name and value:
            return str(value.decode(errors="replace"))
    return None


class ConsumerAdmission:
    """The admission of a consumer's messages, and its dead letters (part of ``EventConsumer``)."""

    name: str
    service: str
    accept: Accept
    addressed: Addressed | None
    passed_over: PassedOver | None
    authorize: Authority
    trust: TrustList

    async def _admit(
        self, conn: asyncpg.Connection, msg: ConsumerRecord[bytes, bytes], doc: object, duplicate: bool
    ) -> AnyEnvelope | None:
        """The message's event if it is to be applied: not a redelivery, parsed, on its own topic,
        wanted, signed by a trusted sender with authority for it. Otherwise None, and whatever
        could not be taken is dead-lettered with its reason. ``doc``: the message's JSON, decoded
        (None if it is not JSON)."""
        labelled(EVENTS_CONSUMED, self.service, self.name, neutral_label(msg.topic)).inc()
        if duplicate:  # a redelivery (rebalance, replay, a re-send after a broker reset)
            labelled(INBOX_DUPLICATES, self.service, self.name).inc()
            return None
        if not self._maybe_addressed(doc):
            return None  # someone else's: not parsed (every registry reads the notification topic)
        try:
            event = parse_event(doc if isinstance(doc, dict) else msg.value or b"")
            wanted = self.accept(event) if spec_for(event.type).topic == msg.topic else None
        except Exception as e:  # unparseable, or a filter that chokes on it: never stall
            await self.dead_letter(conn, msg, describe_error(e))
            return None
        if wanted is None:
            # A well-formed event on the wrong topic: its handler would misread it.
            await self.dead_letter(conn, msg, f"event type {event.type} does not belong on topic {msg.topic}")
            return None
        if not wanted:
            return None
        try:
            self.check(event, doc)
        except Rejected as e:
            await self.reject(conn, msg, e)
            return None
        return event

    def check(self, event: AnyEnvelope, doc: object) -> None:
        """The signature of the message (``doc``: its JSON, decoded) against the trust list and its
        sender's authority for the event; raises ``Rejected``. Also for a replayed dead letter
        (``shared.dead_letters``); ``bench/unsigned`` switches it off to measure its cost."""
        self.authorize(event, verify_document(doc, self.trust))

    def _passed_over(self, msg: ConsumerRecord[bytes, bytes]) -> bool:
        """Whether ``passed_over`` says by the message's headers that it is someone else's: it is
        then left undecoded. A header it cannot read leads to the JSON, which ``addressed`` and
        the rest judge."""
        if self.passed_over is None:
            return False
        try:
            return self.passed_over(msg)
        except Exception:
            return False

    def _maybe_addressed(self, doc: object) -> bool:
        """False when the message was someone else's by its headers, or ``addressed`` says for
        certain that the document is someone else's."""
        if doc is _ELSEWHERE:
            return False
        if self.addressed is None or not isinstance(doc, dict):
            return True
        try:
            return self.addressed(doc)
        except Exception:  # unreadable here: parsing says what is wrong with it
            return True

    async def reject(self, conn: asyncpg.Connection, msg: ConsumerRecord[bytes, bytes], e: Rejected) -> None:
        """Dead-letter a refused event with its reason, and count it."""
        await dead_letters.refuse(conn, msg, e, consumer=self.name, service=self.service)

    async def dead_letter(
        self, conn: asyncpg.Connection, msg: ConsumerRecord[bytes, bytes], reason: str
    ) -> None:
        """Keep the message with its reason, and queue it for ``<topic>.dlq`` through the outbox."""
        await dead_letters.keep(conn, msg, reason, consumer=self.name, service=self.service)
