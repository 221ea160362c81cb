"""``exchangectl replay``: rebuild a projection from the outbox, the durable log of every event.

Events are read from the producing services' ``outbox`` tables (published rows are kept), the
rows queued for the consumer's topics, and applied through the consuming service's own consumer:
its handler and its inbox, so an event is applied once even while the running service consumes
the same events from Kafka. By topic, not by type: the same outboxes queue the copies of what
their own consumers dead-lettered for ``<topic>.dlq``, under the type the refused message claimed.

* from the beginning (default): the projection and its consumer's inbox are cleared, then every
  event is applied again, in one pass;
* ``--since T``: events written at or after T are applied on top of the projection; those the
  inbox already holds are skipped, so a partial replay can be repeated safely.

Clearing is the consuming service's own use case (``Projection.clear``); the command line
deletes no row of a service itself.

A projection whose consumer offers a bulk rebuild (the verification read model, the exchange
roster) is rebuilt from the beginning in one transaction: every event folded in memory by the
service's own ``rebuild`` and written with COPY, the same outcome as the handler's, many times
faster. ``--event-by-event`` takes the handler path anyway.

``--from-broker`` (verification only) is the rebuild for events no outbox holds: the read model
is emptied and a new replay generation begins, read from Kafka by the restarted service. It is
the same projection's rebuild, so it is an option of this command, not a command of its own.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import typer

from cli import queries
from cli.common import (
    DatabasesOption,
    JsonOption,
    StackInfo,
    StackOption,
    connection,
    console,
    emit_json,
    err_console,
    progress_bar,
    run,
    unit_of_work_at,
)
from cli.consumers import apply, consumer_for_topic, live_name, service_consumers
from services.migrant_exchange.service_layer import roster as exchange_roster
from services.registry.service_layer import counterpart
from services.verification.service_layer import read_model
from services.verification.settings import VerificationSettings
from shared.db import create_pool, unit_of_work
from shared.events.catalog import VITAL_TOPICS, parse_event

# Empties a projection and its consumer's inbox, in the caller's transaction: the consuming
# service's own use case. Arguments: connection, consumer (inbox) name, jurisdictions served.
Clear = Callable[[asyncpg.Connection, str, list[str]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Projection:
    """What to rebuild: where it lives, which events feed it from where, how to clear it."""

    name: str
    service: str  # the consuming service in the stack
    topic: str  # selects the consumer of that service; its topics select the events replayed
    sources: list[str]  # producing services whose outboxes hold the events
    clear: Clear  # before a rebuild from the beginning
    bulk: bool = True  # a bulk rebuild may replace it (it is the projection's every row)


async def _clear_verification(conn: asyncpg.Connection, consumer: str, _served: list[str]) -> dict[str, Any]:
    return await read_model.clear(conn, consumer)


async def _clear_roster(conn: asyncpg.Connection, consumer: str, _served: list[str]) -> dict[str, Any]:
    return await exchange_roster.clear(conn, consumer)


async def _clear_counterpart(conn: asyncpg.Connection, consumer: str, served: list[str]) -> dict[str, Any]:
    # counterpart rows share tables with the registry's own records: no bulk rebuild
    return await counterpart.forget_counterpart_records(conn, served, consumer)


def projection(name: str, info: StackInfo, jurisdiction: str | None) -> Projection:
    registries = [s for s in info.services_with_databases() if s.startswith("registry")]
    if name == "verification":
        return Projection(name, "verification", "certificate.lifecycle.v1", registries, _clear_verification)
    if name == "exchange-roster":
        return Projection(name, "migrant_exchange", VITAL_TOPICS[0], registries, _clear_roster)
    if name == "counterpart":
        if not jurisdiction:
            raise typer.BadParameter("name the registry's jurisdiction", param_hint="--jurisdiction")
        service = info.registry_for(jurisdiction)
        topic = "exchange.notification.v1"
        return Projection(name, service, topic, ["migrant_exchange"], _clear_counterpart, bulk=False)
    raise typer.BadParameter("verification, exchange-roster or counterpart", param_hint="PROJECTION")


async def _events(
    info: StackInfo, p: Projection, topics: list[str], since: dt.datetime | None
) -> list[bytes]:
    """Every source's events on ``topics``, merged in the order they were written (never the
    copies of dead letters its outbox queued for ``<topic>.dlq``: ``queries.outbox_events``)."""
    rows: list[tuple[dt.datetime, Any, bytes]] = []
    for source in p.sources:
        async with connection(info.dsn(source)) as conn:
            found = await queries.outbox_events(conn, topics, since)
        rows += [(r["created_at"], r["event_id"], bytes(r["value"])) for r in found]
    rows.sort(key=lambda r: (r[0], r[1]))
    return [value for _, _, value in rows]


def _parsed(events: list[bytes], on_progress: Any, every: int = 5000) -> Iterator[Any]:
    for i, value in enumerate(events, 1):
        yield parse_event(value)
        if on_progress is not None and i % every == 0:
            on_progress(every, None)
    if on_progress is not None:
        on_progress(len(events) % every, None)


@dataclass
class _Tally:
    applied: int = 0  # applied, or found already applied by the inbox
    skipped: int = 0  # not addressed to the consumer's jurisdictions
    refused: int = 0  # refused by the consumer's handler, as the live consumer refuses it


async def _consumer(info: StackInfo, p: Projection, pool: asyncpg.Pool, dsn: str) -> Any:
    """The consuming service's own consumer of the projection's topic, under its live name."""
    consumers = service_consumers(p.service, pool, dsn, info.jurisdictions(p.service), info.trust(p.service))
    consumer = consumer_for_topic(consumers, p.topic)
    async with pool.acquire() as conn:
        consumer.name = await live_name(conn, consumer)
    return consumer


async def _clear(
    pool: asyncpg.Pool,
    p: Projection,
    consumer: Any,
    served: list[str],
    bulk_events: list[bytes] | None,
    on_progress: Any,
) -> tuple[dict[str, Any], _Tally]:
    """Clear the projection; with ``bulk_events``, rebuild it in the same unit of work.

    One transaction when bulk: the running service's consumer waits on the inbox lock (taken
    first by the clearing use case) and then finds every event applied."""
    tally = _Tally()
    async with unit_of_work(pool, wake=False) as conn:
        cleared = await p.clear(conn, consumer.name, served)
        if bulk_events is not None:
            tally.applied = await consumer.rebuild_from(conn, _parsed(bulk_events, on_progress))
            tally.skipped = len(bulk_events) - tally.applied
    return cleared, tally


async def _apply_in_chunks(
    pool: asyncpg.Pool, consumer: Any, events: list[bytes], batch_size: int, on_progress: Any, tally: _Tally
) -> None:
    """Every event through the consumer's handler and inbox, one unit of work per chunk (the relay
    is woken after each commit: handlers may have queued events, feedback or notifications)."""
    for start in range(0, len(events), batch_size):
        chunk = events[start : start + batch_size]
        async with unit_of_work(pool) as conn:
            for value in chunk:
                outcome = await apply(consumer, conn, parse_event(value))
                if outcome == "applied":
                    tally.applied += 1
                elif outcome == "skipped":
                    tally.skipped += 1
                else:
                    tally.refused += 1
        if on_progress is not None:
            on_progress(len(chunk), None)


async def replay(
    info: StackInfo,
    p: Projection,
    since: dt.datetime | None,
    batch_size: int,
    on_progress: Any = None,
    *,
    event_by_event: bool = False,
) -> dict[str, Any]:
    started = time.monotonic()
    dsn = info.dsn(p.service)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    cleared: dict[str, Any] = {}
    tally = _Tally()
    try:
        consumer = await _consumer(info, p, pool, dsn)
        # whatever the consumer reads, from the outboxes of those who produce it: by topic, so
        # that the copies of what their own consumers dead-lettered stay out
        events = await _events(info, p, list(consumer.topics), since)
        if on_progress is not None:
            on_progress(0, len(events))
        bulk = since is None and p.bulk and consumer.rebuild is not None and not event_by_event
        if since is None:
            served = info.jurisdictions(p.service)
            cleared, tally = await _clear(pool, p, consumer, served, events if bulk else None, on_progress)
        await _apply_in_chunks(pool, consumer, [] if bulk else events, batch_size, on_progress, tally)
    finally:
        await pool.close()
    seconds = time.monotonic() - started
    return {
        "projection": p.name,
        "service": p.service,
        "consumer": consumer.name,
        "from": since.isoformat() if since else "beginning",
        "mode": "bulk" if bulk else "event by event",
        "events": len(events),
        "applied_or_already_applied": tally.applied,
        "not_addressed_here": tally.skipped,
        "refused": tally.refused,
        "cleared": cleared,
        "seconds": round(seconds, 3),
        "events_per_second": round(len(events) / seconds, 1) if seconds else 0.0,
    }


def replay_command(
    name: str = typer.Argument(
        ..., metavar="PROJECTION", help="verification, exchange-roster or counterpart"
    ),
    jurisdiction: str | None = typer.Option(
        None, "--jurisdiction", "-j", help="for counterpart: the registry's code"
    ),
    since: dt.datetime | None = typer.Option(
        None, "--since", help="apply events written at or after this time (ISO 8601) instead of rebuilding"
    ),
    batch_size: int = typer.Option(1000, min=1, help="events per transaction"),
    event_by_event: bool = typer.Option(
        False,
        "--event-by-event",
        help="rebuild through the consumer's handler one event at a time, even where a bulk rebuild exists",
    ),
    from_broker: bool = typer.Option(
        False,
        "--from-broker",
        help="verification only: empty the read model and start a new replay generation; "
        "the service, restarted, reads every topic from the beginning (where no outbox holds the events)",
    ),
    stack: Path | None = StackOption,
    databases: list[str] | None = DatabasesOption,
    as_json: bool = JsonOption,
) -> None:
    """Rebuild a projection from the outboxes: the verification read model, the exchange roster, or a registry's counterpart records, from the beginning or from a point in time.

    From the beginning, the projection is cleared and every event applied again; with --since, later events are applied on top and those already applied are skipped. The one command for every projection rebuild.
    """
    info = StackInfo(stack, databases)
    if from_broker and (since is not None or event_by_event):
        raise typer.BadParameter(
            "the broker replays every event, by the restarted service", param_hint="--from-broker"
        )
    if from_broker:
        _from_broker(info, name, as_json)
        return
    p = projection(name, info, jurisdiction)
    if since is not None and since.tzinfo is None:
        since = since.astimezone()  # a time without zone is the operator's local time
    with progress_bar() as bar:
        task = bar.add_task(f"replay {name}", total=None)

        def progress(n: int, total: int | None) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.advance(task, n)

        result = run(replay(info, p, since, batch_size, progress, event_by_event=event_by_event))
    if as_json:
        emit_json(result)
    else:
        err_console.print(
            f"cleared: {result['cleared']}" if result["cleared"] else "nothing cleared (--since)"
        )
        console.print(
            f"replayed {result['events']} events into {name} ({result['service']}) in {result['seconds']:.1f}s, "
            f"{result['events_per_second']:,.0f} events/s"
        )


async def _new_generation(dsn: str) -> str:
    async with unit_of_work_at(dsn, wake=False) as conn:
        # CONSUMER_GROUP and the like come from the environment, as for the service
        return await read_model.new_generation(conn, VerificationSettings(database_url=dsn))


def _from_broker(info: StackInfo, name: str, as_json: bool) -> None:
    """The verification read model emptied for a replay from the broker by the restarted service."""
    if name != "verification":
        raise typer.BadParameter(
            "only the verification read model replays from the broker", param_hint="--from-broker"
        )
    consumer = run(_new_generation(info.dsn("verification")))
    if as_json:
        emit_json(
            {"projection": name, "service": "verification", "mode": "from the broker", "consumer": consumer}
        )
        return
    console.print(f"read model emptied; restart the service to replay as {consumer}")
