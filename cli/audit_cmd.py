"""``exchangectl audit``: check the hash-chained audit logs; export a subject's disclosure history."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import typer

from cli import queries
from cli.common import (
    JsonOption,
    StackInfo,
    StackOption,
    connection,
    console,
    emit,
    emit_json,
    run,
    subject_secret,
    write_private,
)
from cli.sheets import SafeCsvWriter
from shared.audit import verify_chain
from shared.audit_anchor import Checkpoint, all_checkpoints, kid_of, unchanged_through
from shared.identity import check_id_number, subject_key
from shared.settings import KafkaSettings
from shared.signing import b64u_decode

app = typer.Typer(help="Check the audit hash chains and export disclosure histories.", no_args_is_help=True)

Service = typer.Option(
    None, "--service", "-s", help="service whose log to use (default: every service in the stack)"
)
Dsn = typer.Option(None, "--dsn", help="a database URL instead of the stack's services")


def _targets(service: list[str] | None, dsn: str | None, stack: Path | None) -> dict[str, str]:
    if dsn:
        return {"database": dsn}
    info = StackInfo(stack)
    names = service or info.services_with_databases()
    if not names:
        raise info.fail(f"no services in {info.path}; pass --dsn or --stack")
    return {name: info.dsn(name) for name in names}


async def _verify(
    targets: dict[str, str], anchors: dict[str, list[Checkpoint]] | None = None
) -> list[dict[str, Any]]:
    results = []
    for name, dsn in targets.items():
        found = (anchors or {}).get(name, [])
        checkpoint = max(found, key=lambda c: c.seq) if found else None
        async with connection(dsn) as conn:
            broken = await verify_chain(
                conn, anchor=(checkpoint.seq, checkpoint.hash) if checkpoint else None
            )
            rows = await queries.audit_count(conn)
            through = await unchanged_through(conn, found) if found else None
        result = {"service": name, "entries": rows, "intact": broken is None, "first_broken_seq": broken}
        if anchors is not None:
            # A chain rewritten and then extended may match its newest checkpoint (one signed after
            # the rewrite, by a checkpointer restarted since); an earlier checkpoint still shows it.
            stale = min((c.seq for c in found if through is not None and c.seq > through), default=None)
            broken = broken if broken is not None else stale
            result |= {
                "first_broken_seq": broken,
                "anchor_seq": checkpoint.seq if checkpoint else None,
                "anchor_at": checkpoint.at if checkpoint else None,
                # every checkpoint up to this row still matches: a rewrite began after it
                "unchanged_through_seq": through,
                # no checkpoint to check against: fine only while there is nothing to anchor
                "intact": broken is None and (checkpoint is not None or rows == 0),
            }
        results.append(result)
    return results


@app.command("verify")
def verify(
    service: list[str] | None = Service,
    dsn: str | None = Dsn,
    stack: Path | None = StackOption,
    anchor: bool = typer.Option(
        False,
        "--anchor",
        help="also check each chain against its service's signed checkpoints, read from the "
        "broker: a rewritten or cut-off chain shows there",
    ),
    anchor_key: list[str] | None = typer.Option(
        None,
        "--anchor-key",
        help="SERVICE=BASE64URL: the public key a service signs checkpoints with (default: the "
        "stack's audit_checkpoint_keys); repeatable",
    ),
    bootstrap: str | None = typer.Option(
        None,
        "--bootstrap-servers",
        help="the broker (default: the stack's)",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Recompute every audit log's hash chain; exit 1 and name the first broken entry if one was altered.

    With ``--anchor``, a chain also fails when the row of any of its checkpoints is missing or
    different (``first_broken_seq``: the first such checkpoint, if the chain itself checks), and
    a service with audit rows but no checkpoint to check against fails as well;
    ``unchanged_through_seq`` is the last row every earlier checkpoint still vouches for."""
    targets = _targets(service, dsn, stack)
    anchors = run(_anchors(StackInfo(stack), targets, anchor_key, bootstrap)) if anchor else None
    results = run(_verify(targets, anchors))
    columns = ["service", "entries", "intact", "first_broken_seq"]
    anchored = ["anchor_seq", "anchor_at", "unchanged_through_seq"] if anchor else []
    emit(results, as_json, "audit chains", columns + anchored)
    if not all(r["intact"] for r in results):
        raise typer.Exit(1)


async def _anchors(
    info: StackInfo, targets: dict[str, str], keys: list[str] | None, bootstrap: str | None
) -> dict[str, list[Checkpoint]]:
    pinned: dict[str, dict[str, bytes]] = {}
    for name, doc in info.doc.get("audit_checkpoint_keys", {}).items():
        raw = b64u_decode(doc["public_key"])
        pinned[name] = {kid_of(raw): raw}
    for item in keys or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter("use SERVICE=BASE64URL", param_hint="--anchor-key")
        raw = b64u_decode(value)
        pinned[name] = {kid_of(raw): raw}
    unpinned = [name for name in targets if name not in pinned]
    if unpinned:
        raise info.fail(f"no checkpoint key pinned for {', '.join(unpinned)}; pass --anchor-key")
    servers = bootstrap or info.doc.get("broker", {}).get("bootstrap_servers")
    if not servers:
        raise info.fail("no broker to read checkpoints from; pass --bootstrap-servers or --stack")
    settings = KafkaSettings(kafka_bootstrap_servers=servers, service_name="exchangectl")
    return await all_checkpoints(settings, {name: pinned[name] for name in targets})


async def _export(targets: dict[str, str], subject: str) -> list[dict[str, Any]]:
    out = []
    for name, dsn in targets.items():
        async with connection(dsn) as conn:
            rows = await queries.audit_entries(conn, subject)
        out += [{"service": name, **dict(r)} for r in rows]
    return _once(sorted(out, key=lambda r: r["at"]))


def _once(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per disclosure: a disclosure reported to the person's registries (and kept by its
    discloser too) carries one ``disclosure_id`` in every log that holds it; the first row stays,
    with the services that hold a copy."""
    seen: dict[str, dict[str, Any]] = {}
    out = []
    for e in entries:
        key = (e["detail"] or {}).get("disclosure_id")
        if key is None:
            out.append(e)
        elif key in seen:
            seen[key].setdefault("also_in", []).append(e["service"])
        else:
            seen[key] = e
            out.append(e)
    return out


@app.command("export")
def export(
    id_number: str | None = typer.Option(None, "--id-number", help="the person's identity number"),
    subject: str | None = typer.Option(None, "--subject", help="or the person's pseudonymous subject key"),
    fmt: str = typer.Option("json", "--format", "-f", help="json or csv"),
    output: Path | None = typer.Option(None, "--output", "-o", help="file to write (default: stdout)"),
    service: list[str] | None = Service,
    dsn: str | None = Dsn,
    stack: Path | None = StackOption,
    as_json: bool = typer.Option(False, "--json", help="the same as --format json"),
) -> None:
    """A person's disclosure history (who received, read or verified what, when, why) from every
    audit log, one row per disclosure, as JSON or CSV."""
    fmt = "json" if as_json else fmt
    if fmt not in ("json", "csv"):
        raise typer.BadParameter("json or csv", param_hint="--format")
    if (id_number is None) == (subject is None):
        raise typer.BadParameter("give --id-number or --subject", param_hint="--id-number")
    if id_number is not None:
        try:
            subject = subject_key(check_id_number(id_number), subject_secret())
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--id-number") from None
    assert subject is not None
    entries = run(_export(_targets(service, dsn, stack), subject))
    text = _csv(entries) if fmt == "csv" else None
    if output is not None:
        if text is None:
            import json

            from cli.common import _plain

            text = json.dumps(_plain(entries), ensure_ascii=False, indent=2)
        write_private(output, text)  # a named person's disclosure history
        console.print(f"{len(entries)} entries written to {output}")
    elif text is not None:
        typer.echo(text, nl=False)
    else:
        emit_json(entries)


def _csv(entries: list[dict[str, Any]]) -> str:
    import json

    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)  # cells are data: text that begins like a formula is escaped
    writer.writerow(["at", "service", "seq", "client_id", "action", "purpose", "detail"])
    for e in entries:
        writer.writerow(
            [
                e["at"].isoformat(),
                e["service"],
                e["seq"],
                e["client_id"],
                e["action"],
                e["purpose"] or "",
                json.dumps(e["detail"], ensure_ascii=False, sort_keys=True),
            ]
        )
    return buffer.getvalue()
