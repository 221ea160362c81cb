"""One handler table per service (issue 20, point 3): each consumer dispatches through its
service's ``HANDLERS``, the table covers every type of the topics it reads, and what the exchange
routes, the counterpart registry has an applier for."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

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
from shared.dispatch import Unhandled, dispatcher, types_on
from shared.events.catalog import CATALOG, CURRENT_TYPES


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


def test_the_exchange_routes_every_registry_event_but_feedback() -> None:
    routed = {t for t, h in exchange_bus.HANDLERS.items() if h is exchange_handlers.route_vital_event}
    assert routed == exchange_bus.ROUTED
    assert "exchange.feedback.v1" not in routed and "exchange.feedback.v1" in exchange_bus.HANDLERS
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
