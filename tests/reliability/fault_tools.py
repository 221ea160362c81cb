"""Tools of the fault tests: a stream of migration events, the counts that prove none was lost, a TCP proxy.

Events enter through the origin registry's own outbox (``shared.outbox.add_event`` in its
database): the registry's relay publishes them, the exchange routes them, the destination
registry applies them and answers with feedback. Every stage leaves a row we can count.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import uuid
from dataclasses import dataclass

import asyncpg

from bench.common import FEEDBACK_ANSWERS, departure
from devstack.stack import DESTINATION, ORIGIN, Stack
from shared.db import init_connection
from shared.identity import compose_id_number, subject_key
from shared.outbox import add_event

_next_birth_day = 0  # days after 1970-01-01 that no call has handed out yet


def migrants(n: int) -> list[str]:
    """``n`` valid identity numbers (500 per birth date) that no other call of this process hands
    out. The tests of a module share a stack, and a person an earlier test moved already has a
    history there: with a random birth date per call, two tests now and then drew the same person
    (seen once in CI, a roster counting 4 moves for 3 events)."""
    global _next_birth_day
    base = dt.date(1970, 1, 1) + dt.timedelta(days=_next_birth_day)
    _next_birth_day += -(-n // 500)
    return [compose_id_number("110101", base + dt.timedelta(days=i // 500), i % 500, "F") for i in range(n)]


async def emit_departures(
    stack: Stack,
    people: list[str],
    *,
    batch: int = 250,
    pause: float = 0.02,
    started: asyncio.Event | None = None,
) -> list[uuid.UUID]:
    """Write one ``migration.departed.v1`` per person into the origin registry's outbox, in batches."""
    secret = stack.subject_secret.encode()
    conn = await asyncpg.connect(stack.service(f"registry-{ORIGIN}").dsn)
    ids: list[uuid.UUID] = []
    try:
        await init_connection(conn)
        for start in range(0, len(people), batch):
            async with conn.transaction():
                for n in people[start : start + batch]:
                    event = await add_event(
                        conn,
                        event_type="migration.departed.v1",
                        source=f"/registry/{ORIGIN}",
                        subject=subject_key(n, secret),
                        data=departure(n, dt.date(2025, 3, 1)),
                        origin=ORIGIN,
                        destination=DESTINATION,
                    )
                    ids.append(event.id)
            if started is not None and len(ids) >= len(people) // 2:
                started.set()
            await asyncio.sleep(pause)
    finally:
        await conn.close()
    return ids


@dataclass
class Counts:
    """One stream's fate at every stage; ``lost`` counts events that never took effect at the end."""

    events_in: int
    published: int
    exchange_applied: int
    roster_moves: int
    notifications: int
    destination_applied: int
    # Feedback the destination queued beyond one per notification sent (the exchange's attempts):
    # what a redelivered notification applied again would leave (no constraint forbids the row).
    destination_repeated: int
    feedback_closed: int

    @property
    def lost(self) -> int:
        return self.events_in - self.destination_applied

    def complete(self) -> bool:
        n = self.events_in
        return (
            self.published == n
            and self.exchange_applied == n
            and self.notifications == n
            and self.destination_applied == n
            and self.feedback_closed == n
        )

    def __str__(self) -> str:
        return (
            f"in={self.events_in} published={self.published} exchange_applied={self.exchange_applied} "
            f"roster_moves={self.roster_moves} notifications={self.notifications} "
            f"destination_applied={self.destination_applied} repeated={self.destination_repeated} "
            f"closed_by_feedback={self.feedback_closed} lost={self.lost}"
        )


async def count(stack: Stack, people: list[str], event_ids: list[uuid.UUID]) -> Counts:
    """Count each stage for this stream only (other tests' rows are left out)."""
    secret = stack.subject_secret.encode()
    subjects = [subject_key(n, secret) for n in people]
    origin = await asyncpg.connect(stack.service(f"registry-{ORIGIN}").dsn)
    exchange = await asyncpg.connect(stack.service("migrant_exchange").dsn)
    dest = await asyncpg.connect(stack.service(f"registry-{DESTINATION}").dsn)
    try:
        published = await origin.fetchval(
            "SELECT count(*) FROM outbox WHERE event_id = ANY($1) AND published_at IS NOT NULL", event_ids
        )
        applied = await exchange.fetchval(
            "SELECT count(DISTINCT event_id) FROM inbox WHERE event_id = ANY($1)", event_ids
        )
        moves = await exchange.fetchval(
            "SELECT coalesce(sum(moves), 0) FROM roster WHERE subject = ANY($1)", subjects
        )
        notes = await exchange.fetchval(
            "SELECT count(*) FROM notifications WHERE event_id = ANY($1)", event_ids
        )
        closed = await exchange.fetchval(
            "SELECT count(*) FROM notifications WHERE event_id = ANY($1) AND state = 'applied'", event_ids
        )
        per_person = await dest.fetch(
            "SELECT DISTINCT id_number FROM migrations WHERE id_number = ANY($1)", people
        )
        sent = await exchange.fetch(
            "SELECT id, attempts FROM notifications WHERE event_id = ANY($1)", event_ids
        )
        note_ids = [str(r["id"]) for r in sent]
        answers = await dest.fetchval(
            f"SELECT count(*) FROM ({FEEDBACK_ANSWERS}) AS f WHERE notification_id = ANY($1::text[])",
            note_ids,
        )
    finally:
        for conn in (origin, exchange, dest):
            await conn.close()
    return Counts(
        events_in=len(event_ids),
        published=published,
        exchange_applied=applied,
        roster_moves=int(moves),
        notifications=notes,
        destination_applied=len(per_person),
        destination_repeated=max(0, answers - sum(r["attempts"] for r in sent)),
        feedback_closed=closed,
    )


async def closed_by_feedback(stack: Stack, event_ids: list[uuid.UUID]) -> int:
    """How many of these events' notifications the destination's feedback has closed: the last
    stage, cheap to count (``count`` reads every feedback the destination queued, which is no
    load to put on the machine twice a second while the system recovers)."""
    conn = await asyncpg.connect(stack.service("migrant_exchange").dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE event_id = ANY($1) AND state = 'applied'",
                event_ids,
            )
        )
    finally:
        await conn.close()


async def wait_complete(
    stack: Stack, people: list[str], event_ids: list[uuid.UUID], timeout: float = 60.0
) -> Counts:
    """Wait until every event is closed by feedback (or the timeout), then count every stage."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await closed_by_feedback(stack, event_ids) >= len(event_ids) or loop.time() > deadline:
            counts = await count(stack, people, event_ids)
            if counts.complete() or loop.time() > deadline:
                return counts
        await asyncio.sleep(0.5)


class TcpProxy:
    """A loopback TCP proxy the test controls: pass, delay each chunk, or cut every connection.

    It runs its own event loop in a thread, so synchronous tests and the services (other
    processes) see it as just another server.
    """

    def __init__(self, listen_port: int, target_port: int):
        self.listen_port = listen_port
        self.target_port = target_port
        self.delay = 0.0
        self.cut = False
        self.bytes_forwarded = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self.cut:
                data = await reader.read(65536)
                if not data:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.cut:
                    break
                writer.write(data)
                self.bytes_forwarded += len(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def set_cut(self, cut: bool) -> None:
        """Cut: refuse new connections and drop the open ones (both directions at once)."""
        self.cut = cut
        if cut:
            self._loop.call_soon_threadsafe(self._drop_all)

    def _drop_all(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    def stop(self) -> None:
        async def close() -> None:
            if self._server:
                self._server.close()
            self._drop_all()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
