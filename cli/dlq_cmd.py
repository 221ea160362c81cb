"""``exchangectl dlq``: messages a consumer could not apply, kept in each service's ``dead_letters``.

The one dead-letter command, for every service: a letter is applied again through the
service's own consumer (handler, inbox, ordering), as the running service would apply it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from cli import queries
from cli.common import (
    DatabasesOption,
    JsonOption,
    StackInfo,
    StackOption,
    connection,
    console,
    emit,
    emit_json,
    run,
)
from cli.consumers import consumer_named, service_consumers
from shared.db import create_pool
from shared.dead_letters import message_shape, replay_dead_letter
from shared.observability import redact
from shared.sensitivity import neutral_text, neutral_topic

app = typer.Typer(help="List, show and replay dead letters.", no_args_is_help=True)
Service = typer.Option(None, "--service", "-s", help="service (default: every service in the stack)")


def _services(info: StackInfo, service: str | None) -> list[str]:
    return [service] if service else info.services_with_databases()


async def _list(
    info: StackInfo, services: list[str], include_replayed: bool, limit: int
) -> list[dict[str, Any]]:
    out = []
    for name in services:
        async with connection(info.dsn(name)) as conn:
            out += [
                {
                    "service": name,
                    **dict(r),
                    "topic": neutral_topic(r["topic"]),
                    "reason": neutral_text(redact(r["reason"])),
                }
                for r in await queries.dead_letters(conn, include_replayed, limit)
            ]
    return out


@app.command("list")
def list_dead_letters(
    service: str | None = Service,
    include_replayed: bool = typer.Option(False, "--all", help="also those already replayed"),
    limit: int = typer.Option(100, min=1),
    stack: Path | None = StackOption,
    databases: list[str] | None = DatabasesOption,
    as_json: bool = JsonOption,
) -> None:
    """List dead letters not yet replayed, per service: consumer, topic, offset and reason."""
    info = StackInfo(stack, databases)
    found = run(_list(info, _services(info, service), include_replayed, limit))
    emit(
        found,
        as_json,
        "dead letters",
        ["service", "id", "consumer", "topic", "offset", "reason", "created_at"],
    )


async def _show(dsn: str, dead_letter_id: int) -> dict[str, Any] | None:
    async with connection(dsn) as conn:
        row = await queries.dead_letter(conn, dead_letter_id)
    if row is None:
        return None
    # operations, not people: where the letter was, why and what shape it has, never the message's
    # values or its subject key (the event's data carries names, birth dates, identity numbers)
    return {
        "id": row["id"],
        "consumer": row["consumer"],
        "topic": neutral_topic(row["topic"]),
        "partition": row["partition"],
        "offset": row["offset"],
        "reason": neutral_text(redact(row["reason"])),
        "created_at": row["created_at"],
        "replayed_at": row["replayed_at"],
        "headers": sorted(neutral_text(redact(str(k)))[:80] for k in (row["headers"] or {})),
        "message": message_shape(row["topic"], bytes(row["value"])),
    }


@app.command("show")
def show(
    dead_letter_id: int = typer.Argument(..., help="the dead letter's id (see dlq list)"),
    service: str = typer.Option(..., "--service", "-s", help="the service that holds it"),
    stack: Path | None = StackOption,
    databases: list[str] | None = DatabasesOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one dead letter: where it came from, why it failed, and the message's shape (its size,
    type and field names; never a value or the subject's key)."""
    found = run(_show(StackInfo(stack, databases).dsn(service), dead_letter_id))
    if found is None:
        console.print(f"[red]no dead letter {dead_letter_id} in {service}")
        raise typer.Exit(1)
    if as_json:
        emit_json(found)
    else:
        for k, v in found.items():
            console.print(f"[bold]{k}[/]: {escape(str(v))}", highlight=False)


async def _replay(info: StackInfo, service: str, ids: list[int]) -> list[dict[str, Any]]:
    dsn = info.dsn(service)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    results = []
    try:
        consumers = service_consumers(service, pool, dsn, info.jurisdictions(service), info.trust(service))
        for dead_letter_id in ids:
            async with pool.acquire() as conn:
                row = await queries.dead_letter(conn, dead_letter_id)
            if row is None:
                results.append({"id": dead_letter_id, "replayed": False, "error": "no such dead letter"})
                continue
            try:
                # one unit of work per letter, after whose commit the relay is woken: what the
                # handler queued goes out without waiting for a poll
                done = await replay_dead_letter(
                    pool, dead_letter_id, consumer_named(consumers, row["consumer"])
                )
                results.append(
                    {"id": dead_letter_id, "replayed": done, "error": None if done else "already replayed"}
                )
            except Exception as e:  # it stays dead; say why
                results.append(
                    {"id": dead_letter_id, "replayed": False, "error": redact(f"{type(e).__name__}: {e}")}
                )
    finally:
        await pool.close()
    return results


@app.command("replay")
def replay(
    dead_letter_ids: list[int] = typer.Argument(None, help="ids to replay"),
    service: str = typer.Option(..., "--service", "-s", help="the service that holds them"),
    all_open: bool = typer.Option(False, "--all-open", help="replay every dead letter not yet replayed"),
    stack: Path | None = StackOption,
    databases: list[str] | None = DatabasesOption,
    as_json: bool = JsonOption,
) -> None:
    """Apply dead letters again through the service's own consumer (after the cause was fixed)."""
    info = StackInfo(stack, databases)
    ids = list(dead_letter_ids or [])
    if all_open:
        ids += [r["id"] for r in run(_list(info, [service], False, 100_000))]
    if not ids:
        raise typer.BadParameter("name dead letter ids or use --all-open")
    results = run(_replay(info, service, ids))
    emit(results, as_json, f"replay in {service}", ["id", "replayed", "error"])
    if not all(r["replayed"] for r in results):
        raise typer.Exit(1)
