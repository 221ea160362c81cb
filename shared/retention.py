"""Retention: what a service keeps only for a while, purged by a background task in each service.

Every service holds stored ``Idempotency-Key`` answers and dead letters; the exchange also holds
notifications' payloads (an applied one is purged at once, another after its answer, or after its
deadline when none came), events parked while waiting for a predecessor, and its census of every
service's dead letters. Each kind has its own
retention (``RETENTION_*``, defaults in the README); once an hour (``RETENTION_INTERVAL_SECONDS``)
rows older than that are deleted, or the payload emptied, in batches of ``_BATCH`` rows, each
its own short transaction, so a purge never holds locks for long. The audit log is never purged
(it is append-only evidence), nor the outbox (the durable log projections are rebuilt from) but
for the copies of dead letters it queued for ``<topic>.dlq``, which go with their letters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.observability import Duty
from shared.settings import BaseServiceSettings

log = logging.getLogger(__name__)

_BATCH = 5000


@dataclass(frozen=True)
class Purge:
    """One kind of row kept for ``seconds``; ``sql`` takes the cut-off ($1) and a batch size ($2)
    and returns how many rows it purged."""

    name: str
    seconds: float
    sql: str


def _delete_older(table: str, column: str) -> str:
    """A batch of ``table``'s rows whose ``column`` is before the cut-off, deleted."""
    return f"""WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                   SELECT ctid FROM {table} WHERE {column} < $1 LIMIT $2)) RETURNING 1)
               SELECT count(*) FROM gone"""


def shared_purges(settings: BaseServiceSettings) -> list[Purge]:
    """What every service holds: stored idempotent answers and dead letters."""
    return [
        Purge(
            "idempotency_answers",
            settings.retention_idempotency_seconds,
            _delete_older("idempotency_keys", "created_at"),
        ),
        Purge("dead_letters", settings.retention_dead_letter_days * 86400, _DEAD_LETTERS),
    ]


# A dead letter and its copy queued for ``<topic>.dlq`` (the outbox row ``dlq_id`` names, the
# whole message too): both go, but not before the relay published the copy, so a letter whose
# copy is still waiting stays with it.
_DEAD_LETTERS = """WITH gone AS (DELETE FROM dead_letters WHERE ctid = ANY(ARRAY(
                       SELECT d.ctid FROM dead_letters d WHERE d.created_at < $1 AND NOT EXISTS (
                           SELECT 1 FROM outbox o WHERE o.event_id = (d.headers->>'dlq_id')::uuid
                                                    AND o.published_at IS NULL)
                       LIMIT $2)) RETURNING (headers->>'dlq_id')::uuid AS copy),
                   copies AS (DELETE FROM outbox o USING gone WHERE o.event_id = gone.copy)
                   SELECT count(*) FROM gone"""


async def purge(
    pool: asyncpg.Pool, purges: Sequence[Purge], now: dt.datetime | None = None
) -> dict[str, int]:
    """Purge everything past its retention; returns how many rows of each kind."""
    now = now or dt.datetime.now(dt.UTC)
    done: dict[str, int] = {}
    for p in purges:
        cutoff = now - dt.timedelta(seconds=p.seconds)
        total = 0
        while True:
            async with pool.acquire() as conn:
                n = int(await conn.fetchval(p.sql, cutoff, _BATCH))
            total += n
            if n < _BATCH:
                break
        done[p.name] = total
    return done


async def run(pool: asyncpg.Pool, settings: BaseServiceSettings, purges: Sequence[Purge]) -> None:
    """The background task: purge now and then, for as long as the service runs."""
    rounds = Duty(settings.service_name, "retention")
    while True:
        try:
            with rounds.round():
                purged = await purge(pool, purges)
            if any(purged.values()):
                log.info("retention purge", extra={"purged": purged})
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the database may be away: the next round purges what this one left
            log.warning("retention purge failed", extra={"error": type(e).__name__})
        await asyncio.sleep(settings.retention_interval_seconds)
