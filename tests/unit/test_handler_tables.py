"""One handler table per service (issue 20, point 3): each consumer dispatches through its
service's ``HANDLERS``, the table covers every type of the topics it reads, and what the exchange
routes, the counterpart registry has an applier for."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord

from services.migrant_exchange.entrypoints.consumer import consumers as exchange_consumers
from services.migrant_exchange.service_layer import handlers as exchange_handlers
from services.migrant_exchange.service_layer import messagebus as exchange_bus
from services.migrant_exchange.settings import ExchangeSettings
from services.registry.entrypoints.consumer import consumers as registry_consumers
from services.registry.service_layer import counterpart
from services.registry.service_layer import messagebus as registry_bus
from services.registry.settings import RegistrySettings
from services.verification.entrypoints.consumer import consumers as verification_consumers
from services.verification.service_layer import messagebus as verification_bus
from services.verification.settings import VerificationSettings
from shared.disclosures import batches, disclosure
from shared.dispatch import Unhandled, dispatcher, types_on
from shared.events import payloads as p
from shared.events.catalog import CATALOG, CURRENT_TYPES
from shared.events.envelope import Envelope
from shared.kafka import make_consumer
from shared.outbox import kafka_headers, make_event


def test_every_consumer_is_wired_and_its_table_covers_its_topics() -> None:
    built = [
        *registry_consumers(None, RegistrySettings(jurisdictions="320412")),  # type: ignore[arg-type]
        *exchange_consumers(None, ExchangeSettings()),  # type: ignore[arg-type]
        *verification_consumers(None, VerificationSettings()),  # type: ignore[arg-type]
    ]
    assert len(built) == 6
    tables = [
        registry_bus.HANDLERS,
        exchange_bus.HANDLERS,
        exchange_bus.INDICATORS,
        verification_bus.HANDLERS,
    ]
    for consumer in built:
        if consumer.name.endswith("-dead-letters"):
            continue  # the census reads headers, it applies nothing
        wanted = set(types_on(consumer.topics))
        assert wanted and any(wanted <= set(t) for t in tables), consumer.name


async def test_only_the_consumers_an_event_waits_on_poll_at_the_short_wait() -> None:
    """An event's way to its counterpart and back crosses the exchange's routing consumer and the
    registries' notification consumers; every other consumer polls at the background wait."""
    registry = RegistrySettings(jurisdictions="320412")
    exchange = ExchangeSettings(consumer_fetch_max_wait_ms=50, background_fetch_max_wait_ms=2000)
    built = [
        *registry_consumers(None, registry),  # type: ignore[arg-type]
        *exchange_consumers(None, exchange),  # type: ignore[arg-type]
        *verification_consumers(None, VerificationSettings()),  # type: ignore[arg-type]
    ]
    on_the_way = {c.name for c in built if not c.background}
    assert on_the_way == {registry.consumer_group, f"{exchange.consumer_group}-events"}
    waits = {}
    for c in built:
        if c.settings is exchange:
            consumer = make_consumer(c.settings, c.name, c.topics, background=c.background)
            waits[c.name] = consumer._fetch_max_wait_ms
            await consumer.stop()
    assert waits == {
        "migrant-exchange-events": 50,
        "migrant-exchange-indicators": 2000,
        "migrant-exchange-dead-letters": 2000,
    }


def test_the_exchange_routes_every_registry_event_but_feedback() -> None:
    routed = {t for t, h in exchange_bus.HANDLERS.items() if h is exchange_handlers.route_vital_event}
    assert routed == exchange_bus.ROUTED
    for feedback in ("exchange.feedback.v1", "exchange.feedback_batch.v1"):
        assert feedback not in routed and feedback in exchange_bus.HANDLERS
    assert {"birth.registered.v2", "certificate.issued.v1", "record.corrected.v1"} <= routed
    assert all(t in CURRENT_TYPES for t in exchange_bus.HANDLERS)


def test_what_the_exchange_routes_a_registry_applies() -> None:
    assert set(exchange_bus.ROUTED) - counterpart.APPLIERS.keys() == set()
    assert all(CATALOG[t].topic.startswith(("vital.", "certificate.")) for t in counterpart.APPLIERS)


def test_a_table_with_a_gap_fails_where_it_is_wired() -> None:
    with pytest.raises(ValueError, match=r"certificate\.revoked\.v1"):
        dispatcher({"certificate.issued.v1": _record}, None, topics=["certificate.lifecycle.v1"])


async def test_dispatch_picks_the_entry_by_type() -> None:
    seen: list[tuple[Any, str]] = []

    async def record(conn: Any, settings: Any, event: Any) -> None:
        seen.append((settings, event.type))

    dispatch = dispatcher({"certificate.issued.v1": record}, "settings")
    await dispatch(None, SimpleNamespace(type="certificate.issued.v1"))  # type: ignore[arg-type]
    assert seen == [("settings", "certificate.issued.v1")]
    with pytest.raises(Unhandled):
        await dispatch(None, SimpleNamespace(type="certificate.revoked.v1"))  # type: ignore[arg-type]


async def _record(conn: Any, settings: Any, event: Any) -> None:
    return None


def _events_on_shared_topics() -> list[Envelope[Any]]:
    """Notifications and disclosures from every kind of sender to every kind of addressee."""
    divisions = ("320412", "440703", "110101")
    now = dt.datetime.now(dt.UTC)
    out: list[Envelope[Any]] = []
    for target in divisions:
        notification = p.ExchangeNotificationV1(
            notification_id=uuid.uuid4(),
            target_division=target,
            source_division="110101",
            event_id=uuid.uuid4(),
            event_type="migration.departed.v1",
            event_sequence=1,
            event_time=now,
            deadline=now,
        )
        out.append(
            make_event(
                event_type="exchange.notification.v1",
                source="/exchange",
                subject="0" * 32,
                data=notification,
                sequence=1,
            )
        )
    for source, discloser in (
        ("/verification", "verification"),
        ("/exchange", "exchange"),
        ("/registry/320412", "320412"),
    ):
        for record_at in (["320412"], ["440703"], ["320412", "440703"], ["110101"]):
            data = disclosure(
                record_at=record_at,
                discloser=discloser,
                action="person.read",
                recipient="someone",
                purpose="benefits",
            )
            out.append(
                make_event(
                    event_type="disclosure.recorded.v1",
                    source=source,
                    subject="0" * 32,
                    data=p.DisclosureRecordedV1.model_validate(data),
                    sequence=1,
                )
            )
            for batch in batches([("1" * 32, data), ("2" * 32, data)]):
                out.append(
                    make_event(
                        event_type="disclosure.batch.v1",
                        source=source,
                        subject=batch.batch_id.hex,
                        data=batch,
                        sequence=1,
                    )
                )
    return out


def test_a_consumer_passes_over_unparsed_only_what_it_would_not_take() -> None:
    """``addressed`` (the look at the decoded JSON before parsing) never refuses an event that
    ``accept`` takes, and does pass over someone else's."""
    built = [
        *registry_consumers(None, RegistrySettings(jurisdictions="320412")),  # type: ignore[arg-type]
        *exchange_consumers(None, ExchangeSettings()),  # type: ignore[arg-type]
    ]
    filtering = [c for c in built if c.addressed is not None]
    assert len(filtering) == 3
    for consumer in filtering:
        on_topics = [e for e in _events_on_shared_topics() if CATALOG[e.type].topic in consumer.topics]
        verdicts = [
            (consumer.accept(e), consumer.addressed(orjson.loads(e.model_dump_json()))) for e in on_topics
        ]
        assert all(addressed for taken, addressed in verdicts if taken), consumer.name
        assert any(not addressed for _, addressed in verdicts), consumer.name


def test_a_consumer_passes_over_undecoded_only_what_it_would_not_take() -> None:
    """``passed_over`` (the look at the Kafka headers the outbox writes, before the JSON is
    decoded) never passes over an event that ``accept`` takes, and does pass over someone else's."""
    built = [
        *registry_consumers(None, RegistrySettings(jurisdictions="320412")),  # type: ignore[arg-type]
        *exchange_consumers(None, ExchangeSettings()),  # type: ignore[arg-type]
    ]
    filtering = [c for c in built if c.passed_over is not None]
    assert len(filtering) == 3
    for consumer in filtering:
        on_topics = [e for e in _events_on_shared_topics() if CATALOG[e.type].topic in consumer.topics]
        verdicts = [(consumer.accept(e), consumer.passed_over(_as_published(e))) for e in on_topics]
        assert not any(passed for taken, passed in verdicts if taken), consumer.name
        assert any(passed for _, passed in verdicts), consumer.name


def _as_published(event: Envelope[Any]) -> ConsumerRecord[bytes, bytes]:
    """The event as a consumer receives it, with the headers the outbox writes."""
    value = event.model_dump_json().encode()
    headers = [(k, v.encode()) for k, v in kafka_headers(event).items()]
    return ConsumerRecord(CATALOG[event.type].topic, 0, 0, 0, 0, b"k", value, None, 1, len(value), headers)
