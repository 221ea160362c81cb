"""The services' own consumers, built for a database outside the service process.

Replay and dead-letter replay apply events exactly as the running service would: through the
handler and inbox of the service's ``EventConsumer``. Nothing here connects to Kafka.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg

from shared.consumer import EventConsumer
from shared.events.signature import Rejected


def service_consumers(
    service: str,
    pool: asyncpg.Pool,
    dsn: str,
    jurisdictions: list[str],
    trust: dict[str, str] | None = None,
) -> list[EventConsumer]:
    """The consumers a service of the stack runs (``registry-<code>``, ``migrant_exchange``, ``verification``).

    ``trust``: the service's ``trust_list_file`` (a replayed dead letter's signature is checked
    against it) and ``event_keys_file`` (a registry opens sealed notifications with it), from
    stack.json; otherwise ``TRUST_LIST_FILE`` / ``EVENT_KEYS_FILE`` from the environment."""
    extra: dict[str, Any] = {k: v for k, v in (trust or {}).items() if v}
    if service.startswith("registry"):
        from services.registry.entrypoints.consumer import consumers as registry_consumers
        from services.registry.settings import RegistrySettings

        served = ",".join(jurisdictions) or service.split("-", 1)[-1]
        return registry_consumers(
            pool, RegistrySettings(database_url=dsn, jurisdictions=served, service_name=service, **extra)
        )
    if service.startswith("migrant_exchange") or service.startswith("exchange"):
        from services.migrant_exchange.entrypoints.consumer import consumers as exchange_consumers
        from services.migrant_exchange.settings import ExchangeSettings

        return exchange_consumers(pool, ExchangeSettings(database_url=dsn, service_name=service, **extra))
    if service.startswith("verification"):
        from services.verification.entrypoints.consumer import consumers as verification_consumers
        from services.verification.settings import VerificationSettings

        return verification_consumers(
            pool, VerificationSettings(database_url=dsn, service_name=service, **extra)
        )
    raise ValueError(f"unknown service {service!r}")


def consumer_named(consumers: list[EventConsumer], name: str) -> EventConsumer:
    for c in consumers:
        if c.name == name:
            return c
    raise ValueError(f"no consumer {name!r} (have {', '.join(c.name for c in consumers)})")


def consumer_for_topic(consumers: list[EventConsumer], topic: str) -> EventConsumer:
    for c in consumers:
        if topic in c.topics:
            return c
    raise ValueError(f"no consumer reads {topic!r}")


Applied = Literal["applied", "skipped", "refused"]


async def apply(consumer: EventConsumer, conn: asyncpg.Connection, event: Any) -> Applied:
    """Apply one event as the consumer would (inbox dedupe in a savepoint): ``skipped`` if filtered
    out, ``refused`` if its handler refuses it (``Rejected``: an authority rule that reads the
    projection, which the live consumer dead-letters), its savepoint rolled back and the rest of
    the replay going on."""
    if not consumer.accept(event):
        return "skipped"
    try:
        await consumer.apply_one(
            conn, event
        )  # the consumer's own exactly-once step, as replay_dead_letter uses
    except Rejected:
        return "refused"
    return "applied"


async def live_name(conn: asyncpg.Connection, consumer: EventConsumer) -> str:
    """The inbox name the running service uses now.

    A service whose read model has replay generations (a ``projection_state`` table and a
    ``consumer_name(generation)`` setting) names its consumer and inbox after the generation;
    replaying under another name would not be deduplicated against what the service applies.
    """
    name_of = getattr(consumer.settings, "consumer_name", None)
    if callable(name_of) and await conn.fetchval("SELECT to_regclass('projection_state') IS NOT NULL"):
        generation = await conn.fetchval("SELECT generation FROM projection_state")
        return str(name_of(int(generation or 0)))
    return consumer.name
