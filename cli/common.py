"""What every subcommand shares: finding the running stack, printing data, progress bars."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

T = TypeVar("T")
DEFAULT_STACK = Path(".run/stack.json")

console = Console()
err_console = Console(stderr=True)

StackOption = typer.Option(
    None,
    "--stack",
    envvar="EXCHANGECTL_STACK",
    help="the running stack's description (default .run/stack.json); gives database URLs, service URLs, tokens",
)
JsonOption = typer.Option(False, "--json", help="print machine-readable JSON instead of tables")


DatabasesOption = typer.Option(
    None,
    "--db",
    help="SERVICE=URL: a service's database (registry-320412, migrant_exchange, verification), "
    "instead of or on top of the stack's; repeatable",
)


class StackInfo:
    """The ``stack.json`` that ``make run`` (devstack) writes: services, databases, clients.

    ``--db SERVICE=URL`` options add or replace databases, so the commands also work against a
    deployment that has no stack.json (a registry service is named ``registry-<division>``).
    """

    def __init__(self, path: Path | None, databases: list[str] | None = None):
        self.path = path or DEFAULT_STACK
        self.doc: dict[str, Any] = {}
        if self.path.exists():
            self.doc = json.loads(self.path.read_text(encoding="utf-8"))
        for item in databases or []:
            name, sep, url = item.partition("=")
            if not sep or not name or not url:
                raise typer.BadParameter("use SERVICE=URL", param_hint="--db")
            self.doc.setdefault("databases", {})[name] = url
            if name.startswith("registry-"):
                service = self.doc.setdefault("services", {}).setdefault(name, {})
                service.setdefault("jurisdictions", name.removeprefix("registry-").split("-"))

    def fail(self, message: str) -> typer.Exit:
        err_console.print(f"[red]{message}")
        return typer.Exit(2)

    def dsn(self, service: str) -> str:
        """The database URL of a service (``registry-320412``, ``verification``, ``migrant_exchange``)."""
        databases = self.doc.get("databases", {})
        if service in databases:
            return str(databases[service])
        raise self.fail(
            f"no database for {service!r} in {self.path} (known: {', '.join(databases) or 'none'}); "
            "pass --dsn or --stack"
        )

    def registry_for(self, jurisdiction: str) -> str:
        """The name of the registry service that serves a jurisdiction."""
        for name, svc in self.doc.get("services", {}).items():
            if name.startswith("registry") and jurisdiction in svc.get("jurisdictions", []):
                return str(name)
        raise self.fail(f"no registry serves {jurisdiction} in {self.path}; pass --dsn or --stack")

    def registry_dsn(self, jurisdiction: str) -> str:
        return self.dsn(self.registry_for(jurisdiction))

    def url(self, service: str) -> str:
        services = self.doc.get("services", {})
        if service not in services:
            raise self.fail(f"no service {service!r} in {self.path}; pass --url or --stack")
        return str(services[service]["url"])

    def token(self, kind: str = "operator") -> str | None:
        for c in self.doc.get("clients", []):
            if c.get("kind") == kind:
                return str(c["token"])
        return None

    def services_with_databases(self) -> list[str]:
        return list(self.doc.get("databases", {}))

    def trust(self, service: str) -> dict[str, str]:
        """The trust list and the service's own event keys (files), as stack.json names them."""
        doc = self.doc.get("trust", {})
        found = {
            "trust_list_file": doc.get("trust_list"),
            "event_keys_file": doc.get("event_keys", {}).get(service),
        }
        return {k: str(v) for k, v in found.items() if v}

    def jurisdictions(self, service: str) -> list[str]:
        """The divisions a service serves (a registry's; none for the others)."""
        return list(self.doc.get("services", {}).get(service, {}).get("jurisdictions", []))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def subject_secret() -> bytes:
    """The pseudonymous-key secret the services use (SUBJECT_KEY_SECRET, or the development default)."""
    from shared.settings import DEV_SUBJECT_KEY

    return os.environ.get("SUBJECT_KEY_SECRET", DEV_SUBJECT_KEY).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, int | float | str | bool):
        return value
    return str(value)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner may read (0600 from its creation on, whatever the
    umask; an existing file is narrowed too): what the tools write of a person stays hers."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def emit_json(data: Any) -> None:
    """JSON on stdout, nothing else: what scripts read."""
    typer.echo(json.dumps(_plain(data), ensure_ascii=False, indent=2))


def emit_table(title: str, rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*(str(_plain(r.get(c, "")) if r.get(c) is not None else "") for c in columns))
    console.print(table)


def emit(rows: list[dict[str, Any]], as_json: bool, title: str, columns: list[str]) -> None:
    """The rows as JSON (``--json``) or as a table of those columns."""
    if as_json:
        emit_json(rows)
    else:
        emit_table(title, rows, columns)


class RateColumn(ProgressColumn):
    """Rows (or events) per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "-/s", style="progress.data.speed")


def progress_bar() -> Progress:
    """The bar long work shows, on stderr so that ``--json`` output stays clean."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


async def connect(dsn: str) -> Any:
    """A connection that reads json/jsonb as the services do (the audit hashes depend on it)."""
    import asyncpg

    from shared.db import init_connection

    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    return conn


@asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[Any]:
    """``connect``, closed on the way out."""
    conn = await connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def unit_of_work_at(dsn: str, *, wake: bool = True) -> AsyncIterator[Any]:
    """One unit of work (``shared.db.unit_of_work_on``) on a connection of its own to ``dsn``:
    commit on normal exit, then wake the relay (``wake``), roll back if the body raises."""
    from shared.db import unit_of_work_on

    async with connection(dsn) as conn, unit_of_work_on(conn, wake=wake) as tx:
        yield tx
