"""Bulk import of a legacy roster into one jurisdiction's registry, resumable and exactly once.

Each row is validated with the registry API's own model (``PersonIn``) and domain rules. Valid
rows are written in batches: persons, their ``person.registered.v1`` outbox rows, the batch's
rejects and the progress mark commit in one transaction, so a stopped import resumes after the
last committed line with nothing lost and nothing twice. The registry's running outbox relay
publishes the events as it does for the API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import asyncpg

from cli import import_messages as say
from cli import import_store as store
from cli.roster import Mapping, read_roster
from cli.sheets import write_table
from cli.validation import Checked, Reject, check_batch
from shared.events.envelope import Envelope, new_event_id
from shared.events.payloads import PersonRegisteredV1
from shared.outbox import add_events, make_event, next_sequences, wake_relay

# line, the person, its subject key, the id of the event that announces it
Person = tuple[int, dict[str, Any], str, uuid.UUID]

# The fields that make a row "the same person" as the one the registry holds.
SAME_PERSON = ("name", "sex", "birth_date", "hukou_division", "residence_division")


class ImportBusy(RuntimeError):
    """Another process is importing the same roster into the same jurisdiction."""


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
        self.dsn, self.path, self.here, self.secret = dsn, path, jurisdiction, secret
        self.mapping = mapping or Mapping.load()
        self.encoding = encoding
        self.batch_size = batch_size
        self.stop_after = stop_after
        self.workers = workers  # processes checking rows ahead of the writer; 0 checks in-process
        self.on_progress = on_progress or (lambda _n: None)
        # told the last committed line when a run continues an earlier one (and whether it was done)
        self.on_resume = on_resume or (lambda _line, _done: None)
        self.source = f"/registry/{jurisdiction}"
        # first line of each identity number in the roster, also over lines a resumed run skips:
        # a number not inserted is then either repeated in the roster or registered before it
        self.first_line: dict[str, int] = {}

    async def run(self, rejects_file: Path | None = None) -> ImportSummary:
        """Import what is not imported yet; returns the summary and writes the rejects file."""
        started = time.monotonic()
        import_id = file_hash(self.path)
        summary = ImportSummary(import_id, self.here, str(self.path))
        await store.prepare(self.dsn)
        conn = await asyncpg.connect(self.dsn)
        try:
            run = await store.start_run(conn, import_id, self.here, self.path.name)
            summary.resumed_after_line = int(run["last_line"])
            if summary.resumed_after_line:
                self.on_resume(summary.resumed_after_line, run["state"] == "done")
                self.on_progress(summary.resumed_after_line - 1)  # the bar starts where the last run stopped
            if run["state"] != "done":
                await self._import(conn, summary, int(run["last_line"]))
            run = await store.get_run(conn, import_id, self.here)
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

    def _batches(self, done_line: int) -> Iterator[list[tuple[int, dict[str, str]]]]:
        batch: list[tuple[int, dict[str, str]]] = []
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
        ahead: deque[tuple[list[tuple[int, dict[str, str]]], asyncio.Future[list[Checked]]]] = deque()
        try:
            for batch in self._batches(done_line):
                if pool is None:
                    checked: asyncio.Future[list[Checked]] = loop.create_future()
                    checked.set_result(check_batch(batch, self.secret))
                else:
                    checked = loop.run_in_executor(pool, check_batch, batch, self.secret)
                ahead.append((batch, checked))
                if len(ahead) > self.workers and await self._write_next(conn, summary, ahead):
                    return
            while ahead:
                if await self._write_next(conn, summary, ahead):
                    return
            await store.finish_run(conn, summary.import_id, self.here)
        finally:
            for _, pending in ahead:  # stopped early: the checks ahead are not needed
                pending.cancel()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    async def _write_next(
        self,
        conn: asyncpg.Connection,
        summary: ImportSummary,
        ahead: deque[tuple[list[tuple[int, dict[str, str]]], asyncio.Future[list[Checked]]]],
    ) -> bool:
        """Write the oldest checked batch; True when the import should stop here (--stop-after)."""
        batch, checked = ahead.popleft()
        await self._commit(conn, summary, batch, await checked)
        return self.stop_after is not None and summary.rows_read >= self.stop_after

    async def _commit(
        self,
        conn: asyncpg.Connection,
        summary: ImportSummary,
        batch: list[tuple[int, dict[str, str]]],
        checked: list[Checked],
    ) -> None:
        rows, people, rejects = self._prepare_batch(checked)
        async with conn.transaction():
            run = await store.get_run(conn, summary.import_id, self.here, lock=True)
            if run["last_line"] >= batch[0][0]:
                raise ImportBusy(say.busy())
            inserted = await store.insert_persons(conn, rows)
            fresh = [x for x in people if x[1]["id_number"] in inserted]
            unchanged, refused = await self._not_inserted(
                conn, [(line, p) for line, p, _, _ in people if p["id_number"] not in inserted]
            )
            rejects += refused
            rejects.sort()
            sequences = await next_sequences(conn, [s for _, _, s, _ in fresh], self.source)
            await add_events(conn, self._events(fresh, sequences))
            counts = (len(fresh), unchanged)
            await store.record_batch(conn, summary.import_id, self.here, batch[-1][0], counts, rejects)
        await wake_relay(conn)
        summary.rows_read += len(batch)
        summary.imported += len(fresh)
        summary.unchanged += unchanged
        summary.rejected += len(rejects)
        summary.batches += 1
        self.on_progress(len(batch))

    async def _not_inserted(
        self, conn: asyncpg.Connection, people: list[tuple[int, dict[str, Any]]]
    ) -> tuple[int, list[Reject]]:
        """Rows whose person the registry already held: a repeat of an earlier roster line is
        refused; a person registered before with the same details is skipped (a corrected roster
        can be imported again); with other details it is refused, as the API refuses it."""
        if not people:
            return 0, []
        held = await store.registered(conn, self.here, [p["id_number"] for _, p in people])
        unchanged, rejects = 0, list[Reject]()
        for line, person in people:
            number = person["id_number"]
            first = self.first_line.get(number, line)
            if first < line:
                rejects.append(
                    (line, "id_number", "no-duplicate", f"id_number: same identity number as line {first}")
                )
                continue
            existing = held.get(number)
            differ = [f for f in SAME_PERSON if existing is not None and existing[f] != person[f]]
            if not differ:
                unchanged += 1
                continue
            rejects.append(
                (
                    line,
                    "id_number",
                    "no-duplicate",
                    f"id_number: already registered with other {', '.join(differ)}",
                )
            )
        return unchanged, rejects

    def _events(self, fresh: list[Person], sequences: dict[str, int]) -> list[Envelope[Any]]:
        """The batch's ``person.registered.v1`` envelopes, with the event ids the person rows hold.

        The first is built and validated by ``make_event``; the others are copies of it with their
        own id, time, subject, sequence, divisions and data, all of which were validated already
        (the person as ``PersonIn``, the subject is our HMAC). Validating each envelope again cost
        more than everything else the import does for a row.
        """
        if not fresh:
            return []
        _, first, subject, event_id = fresh[0]
        template = make_event(
            event_type="person.registered.v1",
            source=self.source,
            subject=subject,
            data=PersonRegisteredV1.model_construct(**first),
            sequence=sequences[subject],
            origin=first["hukou_division"],
            destination=first["residence_division"],
        ).model_copy(update={"id": event_id})
        events = [template]
        for _, person, subject, event_id in fresh[1:]:
            events.append(
                template.model_copy(
                    update={
                        "id": event_id,
                        "time": dt.datetime.now(dt.UTC),
                        "subject": subject,
                        "sequence": sequences[subject],
                        "origin": person["hukou_division"],
                        "destination": person["residence_division"],
                        "data": PersonRegisteredV1.model_construct(**person),
                    }
                )
            )
        return events

    def _prepare_batch(
        self, checked: list[Checked]
    ) -> tuple[list[tuple[Any, ...]], list[Person], list[Reject]]:
        rows: list[tuple[Any, ...]] = []
        people: list[Person] = []
        rejects: list[Reject] = []
        seen: dict[str, int] = {}
        for line, person, error, subject in checked:
            if error is not None:
                rejects.append((line, *error))
                continue
            assert person is not None and subject is not None
            number = person["id_number"]
            if number in seen:  # the first row of a number in the batch wins, as the database would
                rejects.append(
                    (
                        line,
                        "id_number",
                        "no-duplicate",
                        f"id_number: same identity number as line {seen[number]}",
                    )
                )
                continue
            seen[number] = line
            event_id = new_event_id()  # the person row records the event that announced it
            people.append((line, person, subject, event_id))
            rows.append(
                (
                    line,
                    self.here,
                    number,
                    subject,
                    person["name"],
                    person["sex"],
                    person["birth_date"],
                    person["hukou_division"],
                    person["residence_division"],
                    self.here,
                    event_id,
                )
            )
        return rows, people, rejects

    async def _write_rejects(self, conn: asyncpg.Connection, import_id: str, target: Path) -> dict[str, int]:
        """The rejects file (CSV, or XLSX when its name ends so), rebuilt from the database so a
        resumed import lists each line once; ``说明`` says the rule in Chinese where it is a common one."""
        counts: dict[str, int] = {}
        rows = await store.rejects(conn, import_id, self.here)
        table = []
        for r in rows:
            table.append(
                [r["line"], r["field"] or "", r["rule"], r["message"], say.RULE_ZH.get(r["rule"], "")]
            )
            counts[r["rule"]] = counts.get(r["rule"], 0) + 1
        write_table(target, ["line", "field", "rule", "message", "说明"], table, sheet="rejects")
        return counts
