"""``exchangectl import``: a legacy roster into a jurisdiction's registry."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import asyncpg
import typer

from cli import import_messages as say
from cli.common import (
    JsonOption,
    StackInfo,
    StackOption,
    console,
    emit_json,
    err_console,
    progress_bar,
    run,
    subject_secret,
)
from cli.importer import ImportBusy, Importer, ImportSummary
from cli.roster import DEFAULT_MAPPING, ENCODINGS, Mapping, RosterError, check_headings, count_lines
from shared.identity import check_division

# What connecting to a registry database that is not there (or not ours) raises.
_UNREACHABLE = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    asyncpg.InvalidAuthorizationSpecificationError,  # unknown user, wrong password
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.CannotConnectNowError,  # starting up or shutting down
)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the import between statements; the open batch rolls back.

    Installed explicitly because a shell starting the command in the background ignores SIGINT.
    """

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def import_roster(
    roster: Path = typer.Argument(..., exists=True, dir_okay=False, help="the roster: .csv or .xlsx"),
    jurisdiction: str = typer.Option(
        ..., "--jurisdiction", "-j", help="division code of the registry to load"
    ),
    mapping: Path = typer.Option(
        DEFAULT_MAPPING, "--mapping", "-m", exists=True, help="YAML file mapping the roster's columns"
    ),
    encoding: str = typer.Option("auto", help=f"CSV encoding: {', '.join(ENCODINGS)}"),
    rejects: Path | None = typer.Option(
        None,
        "--rejects",
        help="where to write the rejected lines, .csv or .xlsx (default ROSTER.rejects.csv)",
    ),
    batch_size: int = typer.Option(5000, min=1, help="rows per transaction"),
    stop_after: int | None = typer.Option(
        None, min=1, help="stop after about this many rows (import a large roster in slices)"
    ),
    workers: int | None = typer.Option(
        None,
        min=0,
        help="processes checking rows ahead of the writer (default: 2 for rosters over 20,000 rows, else 0)",
    ),
    dsn: str | None = typer.Option(
        None, "--dsn", envvar="REGISTRY_DATABASE_URL", help="registry database URL"
    ),
    stack: Path | None = StackOption,
    as_json: bool = JsonOption,
) -> None:
    """Load a legacy roster (CSV or XLSX, UTF-8 or GB18030) into a registry through its own validation.

    Rows are parsed with the registry API's schema and registered by the registry's own bulk-import use case, which applies its registration rule; good rows become persons and person.registered.v1 events, written in batches with COPY. Stopping and running the same command again resumes after the last committed batch, with no duplicates. Every bad row goes to the rejects file with its line number and the rule it broke. Cells are data, never formulas: a cell beginning with = + - @ (after any tab or CR) is refused with the rule no-formula-prefix, as the API refuses it. Messages are in Chinese, then English.
    """
    _check(jurisdiction, encoding)
    target = dsn or StackInfo(stack).registry_dsn(jurisdiction)
    rejects_file = rejects or roster.with_name(roster.name + ".rejects.csv")
    with _stops_with_a_reason():
        columns = Mapping.load(mapping)
        check_headings(roster, columns, encoding)
        importer = partial(
            Importer,
            target,
            roster,
            jurisdiction,
            subject_secret(),  # the registry's: persons are keyed as its API keys them
            mapping=columns,
            encoding=encoding,
            batch_size=batch_size,
            stop_after=stop_after,
        )
        summary = _run(importer, roster, workers, rejects_file)
    if as_json:
        emit_json(summary.as_dict())
        return
    console.print(say.summary(summary), markup=False, highlight=False, soft_wrap=True)


def _check(jurisdiction: str, encoding: str) -> None:
    try:
        check_division(jurisdiction)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--jurisdiction") from None
    if encoding not in ENCODINGS:
        raise typer.BadParameter(f"choose one of {', '.join(ENCODINGS)}", param_hint="--encoding")


def _run(
    importer: Callable[..., Importer], roster: Path, workers: int | None, rejects_file: Path
) -> ImportSummary:
    """The import under a progress bar, stopped between statements by Ctrl-C or SIGTERM."""
    with _stop_on_signals(), progress_bar() as bar:
        total = count_lines(roster)
        task = bar.add_task(f"import {roster.name}", total=total)
        return run(
            importer(
                workers=workers if workers is not None else (2 if total > 20_000 else 0),
                on_progress=lambda n: bar.advance(task, n),
                on_resume=lambda line, done: _say(say.already_done(line) if done else say.resumed(line)),
            ).run(rejects_file)
        )


@contextlib.contextmanager
def _stops_with_a_reason() -> Iterator[None]:
    """A roster, a registry or an operator that stops the import: say why, exit 2 (130 on Ctrl-C)."""
    try:
        yield
    except RosterError as e:
        raise _stopped(str(e)) from None
    except ImportBusy:
        raise _stopped(say.busy()) from None
    except _UNREACHABLE as e:
        raise _stopped(say.unreachable(e)) from None
    except KeyboardInterrupt:
        raise _stopped(say.interrupted(), code=130, style="yellow") from None


def _say(message: str, style: str | None = None) -> None:
    err_console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)


def _stopped(message: str, *, code: int = 2, style: str = "red") -> typer.Exit:
    """Say why the import stopped; the exit to raise."""
    _say(message, style)
    return typer.Exit(code)
