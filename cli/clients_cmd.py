"""``exchangectl clients``: the authoritative clients file, and applying it to the services.

Every change is written to the clients file first (the services watch it and apply it on
their own), then applied at once to every service database the stack names, through the
services' own code (``shared.clients_file.sync_clients``), so a revocation takes effect
before the command returns. A new or rotated secret is printed once and stored nowhere.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, NoReturn

import typer

from cli.common import (
    DatabasesOption,
    JsonOption,
    StackInfo,
    StackOption,
    console,
    emit,
    run,
    unit_of_work_at,
)
from shared.auth import new_credential
from shared.clients_file import (
    ClientEntry,
    ClientsFileError,
    applied_revision,
    parse_entries,
    read_document,
    read_file,
    sync_clients,
    write_file,
)

app = typer.Typer(
    help="Create, rotate, revoke and list API clients (the clients file).", no_args_is_help=True
)

ClientId = typer.Option(..., "--id", help="the client's id (lower case letters, digits, - and _)")
FileOption = typer.Option(
    None, "--file", envvar="CLIENTS_FILE", help="the clients file (default: the stack's clients_file)"
)
ExpiresDays = typer.Option(
    365, "--expires-days", min=1, help="the credential expires this many days from now"
)


def _file(info: StackInfo, path: Path | None) -> Path:
    found = path or (Path(info.doc["clients_file"]) if info.doc.get("clients_file") else None)
    if found is None:
        raise info.fail("no clients file: pass --file or --stack")
    return found


def _opened(
    stack: Path | None, db: list[str] | None, file: Path | None
) -> tuple[StackInfo, Path, dict[str, ClientEntry]]:
    """The stack, the clients file it names (or ``--file``) and the clients in it."""
    info = StackInfo(stack, db)
    path = _file(info, file)
    return info, path, _load(info, path)


def _load(info: StackInfo, path: Path) -> dict[str, ClientEntry]:
    try:
        return {e.client_id: e for e in read_file(path)} if path.exists() else {}
    except ClientsFileError as e:
        raise info.fail(f"{path}: {e}") from None


def _save_and_apply(info: StackInfo, path: Path, entries: dict[str, ClientEntry]) -> list[str]:
    """Write the file as its next revision, then apply it to every service database known;
    returns the services done. A copy of the file older than what a database applied is left
    unwritten; a bare list (no revision yet) becomes the revision after the latest applied."""
    services = info.services_with_databases()

    async def applied() -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for name in services:
            async with unit_of_work_at(info.dsn(name), wake=False) as conn:
                found[name] = await applied_revision(conn)
        return found

    try:
        current = read_document(path).revision if path.exists() else None
    except ClientsFileError as e:
        raise info.fail(f"{path}: {e}") from None
    before = run(applied())
    latest = max((r for r in before.values() if r is not None), default=0)
    if current is not None and current < latest:
        _behind(info, path, current, {n: r for n, r in before.items() if r is not None and r > current})
    revision = (current if current is not None else latest) + 1
    write_file(path, list(entries.values()), revision)

    async def apply() -> tuple[list[str], dict[str, int | None]]:
        done, ahead = [], {}
        for name in services:
            async with unit_of_work_at(info.dsn(name), wake=False) as conn:
                synced = await sync_clients(conn, list(entries.values()), revision)
            if synced.applied:
                done.append(name)
            else:  # another edit was applied meanwhile
                ahead[name] = synced.applied_before
        return done, ahead

    done, ahead = run(apply())
    if ahead:
        _behind(info, path, revision, ahead)
    return done


def _behind(info: StackInfo, path: Path, revision: int, ahead: dict[str, int | None]) -> NoReturn:
    services = ", ".join(f"{name} (revision {r})" for name, r in ahead.items())
    raise info.fail(
        f"{path} is at revision {revision}, but {services} applied a later one: "
        "this copy of the clients file is behind the one in use; edit that one"
    )


def _shown_once(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, default=str, indent=2))
    else:
        console.print(f"{result['client_id']}: {result['token']}")
        console.print("[yellow]the credential is shown this once; only its hash is kept")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@app.command("create")
def create(
    client_id: str = ClientId,
    kind: str = typer.Option(
        ..., "--kind", help="jurisdiction, kiosk, department, operator or service (the exchange's own)"
    ),
    jurisdiction: str | None = typer.Option(None, "--jurisdiction", "-j", help="home division code"),
    scope: list[str] | None = typer.Option(None, "--scope", help="a scope (repeatable; default: the kind's)"),
    expires_days: int = ExpiresDays,
    file: Path | None = FileOption,
    stack: Path | None = StackOption,
    db: list[str] | None = DatabasesOption,
    as_json: bool = JsonOption,
) -> None:
    """Register a client; its credential is printed once."""
    info, path, entries = _opened(stack, db, file)
    if client_id in entries:
        state = "was revoked (ids are never reused)" if entries[client_id].revoked else "exists; use rotate"
        raise info.fail(f"client {client_id} {state}")
    token, secret_hash = new_credential(client_id)
    expires = _now() + dt.timedelta(days=expires_days)
    try:
        [entries[client_id]] = parse_entries(
            [
                {
                    "client_id": client_id,
                    "kind": kind,
                    "jurisdiction": jurisdiction,
                    "scopes": scope or None,
                    "secret_hash": secret_hash,
                    "expires_at": expires,
                }
            ]
        )
    except ClientsFileError as e:
        raise info.fail(str(e)) from None
    applied = _save_and_apply(info, path, entries)
    _shown_once(
        {"client_id": client_id, "token": token, "expires_at": expires, "applied_to": applied}, as_json
    )


@app.command("rotate")
def rotate(
    client_id: str = ClientId,
    overlap_hours: float = typer.Option(
        24.0, "--overlap-hours", min=0, help="how long the old secret still works"
    ),
    expires_days: int = ExpiresDays,
    file: Path | None = FileOption,
    stack: Path | None = StackOption,
    db: list[str] | None = DatabasesOption,
    as_json: bool = JsonOption,
) -> None:
    """Give a client a new credential (printed once); the old one works until the overlap ends."""
    info, path, entries = _opened(stack, db, file)
    old = entries.get(client_id)
    if old is None or old.revoked:
        raise info.fail(f"client {client_id} is {'revoked' if old else 'not in ' + str(path)}")
    token, secret_hash = new_credential(client_id)
    now = _now()
    overlap_end = now + dt.timedelta(hours=overlap_hours)
    if old.expires_at is not None:
        overlap_end = min(overlap_end, old.expires_at)  # a rotation never extends the old secret
    entries[client_id] = old.model_copy(
        update={
            "secret_hash": secret_hash,
            "expires_at": now + dt.timedelta(days=expires_days),
            "previous_secret_hash": old.secret_hash,
            "previous_expires_at": overlap_end,
        }
    )
    applied = _save_and_apply(info, path, entries)
    _remember_token(info, client_id, token)
    result = {
        "client_id": client_id,
        "token": token,
        "previous_valid_until": overlap_end,
        "applied_to": applied,
    }
    _shown_once(result, as_json)


@app.command("revoke")
def revoke(
    client_id: str = ClientId,
    file: Path | None = FileOption,
    stack: Path | None = StackOption,
    db: list[str] | None = DatabasesOption,
    as_json: bool = JsonOption,
) -> None:
    """Revoke a client for good: its credentials stop working at once, and it never comes back."""
    info, path, entries = _opened(stack, db, file)
    old = entries.get(client_id)
    if old is None:
        raise info.fail(f"client {client_id} is not in {path}")
    if not old.revoked:
        entries[client_id] = old.model_copy(update={"revoked": True, "revoked_at": _now()})
    applied = _save_and_apply(info, path, entries)
    result = {"client_id": client_id, "state": "revoked", "applied_to": applied}
    emit([result], as_json, "revoked", ["client_id", "state", "applied_to"])


@app.command("list")
def list_clients(
    file: Path | None = FileOption,
    stack: Path | None = StackOption,
    as_json: bool = JsonOption,
) -> None:
    """The clients of the file and their state (active, rotating, expired, revoked); no secrets, no hashes."""
    info = StackInfo(stack)
    now = _now()
    rows = [
        {
            "client_id": e.client_id,
            "kind": e.kind,
            "jurisdiction": e.jurisdiction,
            "scopes": e.effective_scopes,
            "state": e.state(now),
            "expires_at": e.expires_at,
            "previous_valid_until": e.previous_expires_at,
        }
        for e in _load(info, _file(info, file)).values()
    ]
    emit(rows, as_json, "clients", ["client_id", "kind", "jurisdiction", "state", "expires_at"])


def _remember_token(info: StackInfo, client_id: str, token: str) -> None:
    """A demo client of ``make run`` keeps its current credential in stack.json (owner-only)."""
    clients = info.doc.get("clients", [])
    if not info.path.exists() or not any(c.get("client_id") == client_id for c in clients):
        return
    for c in clients:
        if c.get("client_id") == client_id:
            c["token"] = token
    doc = json.loads(info.path.read_text(encoding="utf-8"))
    doc["clients"] = clients
    info.path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
