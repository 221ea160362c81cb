"""The registry's handler table: what each event type it consumes does here.

``HANDLERS`` is used by the registry's consumers (``entrypoints.consumer``), by
``exchangectl replay counterpart`` and by dead-letter replay, all through the consumer's
exactly-once step. A notification carries another jurisdiction's event; what that event does
to our records is the counterpart table ``counterpart.APPLIERS``, and a reconciliation repair
reaches our records the same way (as ``record.corrected.v1``).

Beside each entry, who may send it (DESIGN section 10): ``shared.events.signature.authority``
checks what the envelope alone decides before any handler runs.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.registry.service_layer.counterpart import apply_notification, apply_notifications
from services.registry.service_layer.disclosures import record_all_reported, record_reported
from services.registry.settings import RegistrySettings
from shared.disclosures import BATCH_TYPE as DISCLOSURE_BATCH
from shared.disclosures import EVENT_TYPE as DISCLOSURE
from shared.dispatch import BatchHandler, Bound, Handler, batch_handler, dispatcher
from shared.events.envelope import Envelope

NOTIFICATION = "exchange.notification.v1"


async def _disclosure(conn: asyncpg.Connection, settings: RegistrySettings, event: Envelope[Any]) -> None:
    await record_reported(conn, event)


HANDLERS: dict[str, Handler[RegistrySettings]] = {
    # Authority: only the exchange; taken if addressed to a division served here.
    NOTIFICATION: apply_notification,
    # Authority: only the party that disclosed; kept if it names a division served here and
    # another party reported it (``reported_to_us``).
    DISCLOSURE: _disclosure,
    # The same, for a batch of disclosures: each entry is appended.
    DISCLOSURE_BATCH: _disclosure,
}


def batches(settings: RegistrySettings) -> dict[str, BatchHandler]:
    """Whole batches where one call does what the table's handler does for each event in turn."""

    async def notifications(conn: asyncpg.Connection, events: list[Envelope[Any]]) -> None:
        await apply_notifications(conn, settings, events)

    return {
        NOTIFICATION: notifications,
        DISCLOSURE: record_all_reported,
        DISCLOSURE_BATCH: record_all_reported,
    }


def handler(settings: RegistrySettings, topics: list[str]) -> Bound:
    """``HANDLERS`` as one consumer handler for ``topics``."""
    return dispatcher(HANDLERS, settings, topics=topics)


def batch(settings: RegistrySettings, topics: list[str]) -> BatchHandler | None:
    """``batches``' handler for a consumer of ``topics``, if they carry a type it has."""
    return batch_handler(batches(settings), topics)
