"""Bulk import of a legacy roster into one jurisdiction's registry, through the registry's use case.

The command line reads the roster, parses each row with the registry API's own model
(``PersonIn``, in worker processes when the roster is large) and hands batches to the
registry's bulk-import use case (``services.registry.service_layer.imports``), in process and
one transaction per batch: that use case applies the registration rule, writes persons with
their ``person.registered.v1`` outbox rows, the batch's rejects and the progress mark together.

In process rather than over ``POST /v1/batches``: a batch there holds at most 1,000 items and
checks each in a savepoint of its own, and it cannot carry the import's progress mark in the
same transaction, which is what makes a stopped import resume with nothing lost or twice; and
COPY keeps a 100,000-row roster to seconds. The rules are the registry's either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import asyncpg

from cli import import_messages as say
from cli.roster import Mapping, read_roster
from cli.sheets import write_table
from cli.validation import Checked, check_batch
from services.registry.service_layer import imports
from services.registry.service_layer.context import Context
from services.registry.service_layer.imports import ImportBatch, ImportBusy
from services.registry.settings import RegistrySettings
from shared.db import init_connection, unit_of_work_on

__all__ = ["ImportBusy", "ImportSummary", "Importer"]

Lines = list[tuple[int, dict[str, str]]]


@dataclass
class ImportSummary:
    """What an import run did; ``--json`` prints it as is."""

    import_id: str
    jurisdiction: str
    file: str
    state: str = "running"
    resumed_after_line: int = 0
    rows_read: int = 0
    imported: int = 0
    unchanged: int = 0
    rejected: int = 0
    batches: int = 0
    total_imported: int = 0
    total_unchanged: int = 0
    total_rejected: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    rejects_file: str | None = None
    rules: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Importer:
    """One roster into one jurisdiction's registry database."""

    def __init__(
        self,
        dsn: str,
        path: Path,
        jurisdiction: str,
        secret: bytes,
        *,
        mapping: Mapping | None = None,
        encoding: str = "auto",
        batch_size: int = 5000,
        stop_after: int | None = None,
        workers: int = 0,
        on_progress: Callable[[int], None] | None = None,
        on_resume: Callable[[int, bool], None] | None = None,
    ):
        self.dsn, self.path, self.here = dsn, path, jurisdiction
        # the registry's context: its subject-key secret makes the pseudonymous keys
        settings = RegistrySettings(jurisdictions=jurisdiction, subject_key_secret=secret.decode())
        self.ctx = Context(settings, client_id="exchangectl")
        self.mapping = mapping or Mapping.load()
        self.encoding = encoding
        self.batch_size = batch_size
        self.stop_after = stop_after
        self.workers = workers  # processes checking rows ahead of the writer; 0 checks in-process
        self.on_progress = on_progress or (lambda _n: None)
        # told the last committed line when a run continues an earlier one (and whether it was done)
        self.on_resume = on_resume or (lambda _line, _done: None)
        # first line of each identity number in the roster, also over lines a resumed run skips
        self.first_line: dict[str, int] = {}

    async def run(self, rejects_file: Path | None = None) -> ImportSummary:
        """Import what is not imported yet; returns the summary and writes the rejects file."""
        started = time.monotonic()
        import_id = file_hash(self.path)
        summary = ImportSummary(import_id, self.here, str(self.path))
        conn = await asyncpg.connect(self.dsn)
        await init_connection(conn)  # the outbox's COPY writes headers through its jsonb codec
        try:
            run = await imports.start(conn, self.here, import_id, self.path.name)
            summary.resumed_after_line = int(run["last_line"])
            if summary.resumed_after_line:
                self.on_resume(summary.resumed_after_line, run["state"] == "done")
                self.on_progress(summary.resumed_after_line - 1)  # the bar starts where the last run stopped
            if run["state"] != "done":
                await self._import(conn, summary, int(run["last_line"]))
            run = await imports.progress(conn, self.here, import_id)
            summary.state = run["state"]
            summary.total_imported, summary.total_rejected = int(run["imported"]), int(run["rejected"])
            summary.total_unchanged = int(run["unchanged"])
            if rejects_file is not None:
                summary.rules = await self._write_rejects(conn, import_id, rejects_file)
                summary.rejects_file = str(rejects_file)
        finally:
            await conn.close()
        summary.seconds = round(time.monotonic() - started, 3)
        summary.rows_per_second = round(summary.rows_read / summary.seconds, 1) if summary.seconds else 0.0
        return summary

    def _batches(self, done_line: int) -> Iterator[Lines]:
        batch: Lines = []
        for line, fields in read_roster(self.path, self.mapping, self.encoding):
            self.first_line.setdefault(fields.get("id_number", "").strip().upper(), line)
            if line <= done_line:
                continue
            batch.append((line, fields))
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _import(self, conn: asyncpg.Connection, summary: ImportSummary, done_line: int) -> None:
        """Check batches ahead (in worker processes) and write them in order, one transaction each."""
        loop = asyncio.get_running_loop()
        # spawn, not fork: the parent holds an event loop and a database connection
        pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn")) if self.workers else None
        ahead: deque[tuple[Lines, asyncio.Future[list[Checked]]]] = deque()
        try:
            for batch in self._batches(done_line):
                if pool is None:
                    checked: asyncio.Future[list[Checked]] = loop.create_future()
                    checked.set_result(check_batch(batch))
                else:
                    checked = loop.run_in_executor(pool, check_batch, batch)
                ahead.append((batch, checked))
                if len(ahead) > self.workers and await self._write_next(conn, summary, ahead):
                    return
            while ahead:
                if await self._write_next(conn, summary, ahead):
                    return
            await imports.finish(conn, self.here, summary.import_id)
        finally:
            for _, pending in ahead:  # stopped early: the checks ahead are not needed
                pending.cancel()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    async def _write_next(
        self,
        conn: asyncpg.Connection,
        summary: ImportSummary,
        ahead: deque[tuple[Lines, asyncio.Future[list[Checked]]]],
    ) -> bool:
        """Write the oldest checked batch; True when the import should stop here (--stop-after)."""
        batch, checked = ahead.popleft()
        await self._commit(conn, summary, batch, await checked)
        return self.stop_after is not None and summary.rows_read >= self.stop_after

    async def _commit(
        self, conn: asyncpg.Connection, summary: ImportSummary, batch: Lines, checked: list[Checked]
    ) -> None:
        """One batch through the registry's use case, in a unit of work of its own: its persons,
        outbox rows, rejects and progress mark commit together, then the relay is woken."""
        command = ImportBatch(
            import_id=summary.import_id,
            first_line=batch[0][0],
            last_line=batch[-1][0],
            people=[(line, person) for line, person, _ in checked if person is not None],
            refused=[(line, *error) for line, _, error in checked if error is not None],
            first_lines=self.first_line,
        )
        async with unit_of_work_on(conn) as tx:
            outcome = await imports.import_batch(tx, self.ctx, self.here, command)
        summary.rows_read += len(batch)
        summary.imported += outcome.imported
        summary.unchanged += outcome.unchanged
        summary.rejected += outcome.rejected
        summary.batches += 1
        self.on_progress(len(batch))

    async def _write_rejects(self, conn: asyncpg.Connection, import_id: str, target: Path) -> dict[str, int]:
        """The rejects file (CSV, or XLSX when its name ends so), rebuilt from the database so a
        resumed import lists each line once; ``说明`` says the rule in Chinese where it is a common one."""
        counts: dict[str, int] = {}
        table = []
        for r in await imports.rejects(conn, self.here, import_id):
            table.append(
                [r["line"], r["field"] or "", r["rule"], r["message"], say.RULE_ZH.get(r["rule"], "")]
            )
            counts[r["rule"]] = counts.get(r["rule"], 0) + 1
        write_table(target, ["line", "field", "rule", "message", "说明"], table, sheet="rejects")
        return counts
