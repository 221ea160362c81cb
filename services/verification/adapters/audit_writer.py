"""Group commit of verifications and their audit entries, then chaining, so verifications
neither pay a commit each nor queue behind one lock.

Step 1, on the request path: concurrent requests queue their work, and one task per kind takes
what is queued (``flush_interval`` seconds after the first item woke it, at once when
``max_batch`` are already waiting, at most ``max_batch`` a statement) and writes it with one
statement, up to ``concurrent_flushes`` batches at a time; requests are answered once their
batch committed. Processes and batches write side by side, and PostgreSQL group-commits their
WAL flushes.

- An online verification by number queues a *check* (``check``): one statement per batch reads
  every check's certificate and inserts its entry into ``audit_pending`` with the evidence read
  (found or not, the holder's key, revocation, expiry, the day checked). The answer and its
  audit come from one snapshot, and a batch costs one round trip and one commit, not one lookup
  per request plus a commit per batch (measured in docs/scale.md).
- Any other entry (a token check) is queued with its final detail (``record``).

Step 2, off the request path: a chainer moves pending entries into the hash-chained
``audit_log`` with ``shared.audit.append``, deleting them in the same transaction. For a check it
first draws the verdict from the stored evidence with ``domain.verdict``, the rule the answer was
drawn with, on the same inputs. A transaction-level try-lock lets one process chain at a time
(the others skip the round), and ``audit.append`` keeps the chain linear in any case.

Crash semantics: an answer is sent only after its entry is durable (pending or chained). A crash
loses only entries of requests that had not been answered (their clients see a dropped
connection); pending entries are chained by whichever process runs next. If a write fails,
every request of the batch fails with it (503 at the edge) rather than answering unaudited.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from services.verification.adapters.repository import CERT_COLUMNS
from services.verification.domain.verdict import verdict
from shared import audit, disclosures
from shared.group_commit import GroupCommit, cancel
from shared.observability import Duty
from shared.trust import VERIFICATION

log = logging.getLogger(__name__)

_CHAIN_LOCK = 0x76636861  # try-lock: one chainer at a time per database
CHECK_ACTION = "certificate.verify"
SOURCE = "/verification"  # the source of the disclosure events this service publishes
# Answers that disclosed nothing about a holder: no certificate, or a token that is not genuine.
UNDISCLOSED = frozenset({"not_found", "invalid_signature"})


@dataclass(frozen=True)
class NumberCheck:
    """An online verification by certificate number, as it is audited."""

    number: str
    client_id: str
    purpose: str
    subject: str  # the presented holder's pseudonymous key, never a raw identity number
    checked_on: dt.date  # the day the verdict is drawn for
    division: str | None = None  # the checking client's home jurisdiction
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class AuditWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        flush_interval: float = 0.001,
        max_batch: int = 512,
        chain_interval: float = 0.05,
        chain_batch: int = 5000,
        concurrent_flushes: int = 1,
        service: str = "verification",
    ):
        self.pool = pool
        self.service = service  # whose audit chaining the duty metric counts
        self.chain_interval = chain_interval
        self.chain_batch = chain_batch
        self._chain_wake = asyncio.Event()
        self._chainer: asyncio.Task[None] | None = None
        batching: dict[str, Any] = {
            "linger": flush_interval,
            "max_batch": max_batch,
            "slots": concurrent_flushes,
            "written": self._chain_wake.set,
        }
        self._checks: GroupCommit[NumberCheck, asyncpg.Record | None] = GroupCommit(
            lambda checks: check_numbers(pool, checks), name="audit-checks", **batching
        )
        self._entries: GroupCommit[audit.AuditEntry, None] = GroupCommit(
            lambda entries: insert_pending(pool, entries), name="audit-entries", **batching
        )

    def start(self) -> None:
        self._checks.start()
        self._entries.start()
        self._chainer = asyncio.create_task(self._chain_forever(), name="audit-chainer")

    async def stop(self) -> None:
        """Write what is queued and chain what is pending, then stop."""
        if self._chainer is not None:
            await cancel(self._chainer)
            self._chainer = None
        await self._checks.stop()
        await self._entries.stop()
        with contextlib.suppress(Exception):
            while await chain_pending(self.pool, self.chain_batch):
                pass

    async def check(self, check: NumberCheck) -> asyncpg.Record | None:
        """The certificate of ``check.number`` (None if unknown), read in the statement that made
        the check's audit entry durable."""
        return await self._checks.submit(check)

    async def record(self, entry: audit.AuditEntry) -> None:
        """Queue an entry and return once it is durable (raises if the insert failed)."""
        await self._entries.submit(entry)

    async def _chain_forever(self) -> None:
        rounds = Duty(self.service, "audit-chaining")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._chain_wake.wait(), self.chain_interval)
            self._chain_wake.clear()
            await asyncio.sleep(self.chain_interval)  # gather a batch worth chaining
            try:
                with rounds.round():
                    while await chain_pending(self.pool, self.chain_batch) >= self.chain_batch:
                        pass
            except Exception as e:  # the next round retries; entries stay pending and durable
                log.warning("audit chaining failed", extra={"error": type(e).__name__})


_CHECK = f"""
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::date[],
                         $8::text[])
           WITH ORDINALITY AS r(asked, at, client_id, purpose, subject, checked_on, division, i)
), found AS (  -- LATERAL: one index probe per check, whatever the planner guesses of unnest
    SELECT req.i, req.at, req.client_id, req.purpose, req.subject, req.checked_on, req.division, c.*
    FROM req LEFT JOIN LATERAL (SELECT {CERT_COLUMNS} FROM certificates WHERE number = req.asked) c ON true
), audited AS (
    INSERT INTO audit_pending (at, client_id, action, purpose, subject, detail,
                               certificate_found, holder_subject, revoked_on, valid_until, checked_on)
    SELECT at, client_id, $7, purpose, subject,
           jsonb_build_object('issuer', issuer, 'via', 'number')
               || jsonb_strip_nulls(jsonb_build_object('certificate_number', number, 'division', division)),
           number IS NOT NULL, holder_subject, revoked_on, valid_until, checked_on
    FROM found ORDER BY i
)
SELECT i, {CERT_COLUMNS} FROM found"""


async def check_numbers(pool: asyncpg.Pool, checks: list[NumberCheck]) -> list[asyncpg.Record | None]:
    """Each check's certificate, read in the one statement that also queues each check's audit
    entry with that evidence (a data-modifying CTE: one snapshot, one commit)."""
    rows = await pool.fetch(
        _CHECK,
        [c.number for c in checks],
        [c.at for c in checks],
        [c.client_id for c in checks],
        [c.purpose for c in checks],
        [c.subject for c in checks],
        [c.checked_on for c in checks],
        CHECK_ACTION,
        [c.division for c in checks],
    )
    found: list[asyncpg.Record | None] = [None] * len(checks)
    for row in rows:
        if row["number"] is not None:
            found[row["i"] - 1] = row
    return found


async def insert_pending(pool: asyncpg.Pool, entries: list[audit.AuditEntry]) -> list[None]:
    """One statement, one round trip: entries whose detail is final when queued."""
    await pool.execute(
        """INSERT INTO audit_pending (at, client_id, action, purpose, subject, detail)
           SELECT at, c, a, p, s, d::jsonb
           FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                AS u(at, c, a, p, s, d)""",
        [e.at for e in entries],
        [e.client_id for e in entries],
        [e.action for e in entries],
        [e.purpose for e in entries],
        [e.subject for e in entries],
        [orjson.dumps(e.detail).decode() for e in entries],
    )
    return [None] * len(entries)


def chained_detail(row: asyncpg.Record) -> dict[str, Any]:
    """The detail to chain: as queued, or for a check by number with the verdict drawn from the
    evidence stored with it, by the rule and on the inputs its answer had."""
    detail: dict[str, Any] = row["detail"]
    if row["checked_on"] is None:
        return detail
    cert = (
        {
            "holder_subject": row["holder_subject"],
            "revoked_on": row["revoked_on"],
            "valid_until": row["valid_until"],
        }
        if row["certificate_found"]
        else None
    )
    return {**detail, "result": verdict(cert, row["subject"], row["checked_on"])}


async def chain_pending(pool: asyncpg.Pool, limit: int) -> int:
    """Move up to ``limit`` pending entries into the hash chain; 0 if another process is at it."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _CHAIN_LOCK):
            return 0
        rows = await conn.fetch(
            """DELETE FROM audit_pending WHERE id IN (SELECT id FROM audit_pending ORDER BY id LIMIT $1)
               RETURNING *""",
            limit,
        )
        rows = sorted(rows, key=lambda r: r["id"])
        entries, told = [], []
        for r in rows:
            detail = chained_detail(r)
            holder, told_registries = disclosure_of(r, detail)
            if told_registries is not None:
                detail = {**detail, "disclosure_id": str(told_registries["disclosure_id"])}
                told.append((holder, told_registries))
            entries.append(
                audit.AuditEntry(r["client_id"], r["action"], r["purpose"], r["subject"], detail, r["at"])
            )
        await audit.append(conn, entries)
        # The holder's registries learn of each check in the same transaction (signed by the relay),
        # as entries of one batch per set of registries.
        await disclosures.publish_batched(conn, SOURCE, told)
        return len(rows)


def disclosure_of(row: asyncpg.Record, detail: dict[str, Any]) -> tuple[str, disclosures.Disclosure | None]:
    """Whose certificate a chained check disclosed, and the event telling the holder's registries
    (the issuer, and the checking client's jurisdiction when it keeps the person): none when no
    certificate of a known holder was found (nothing about anyone was disclosed)."""
    holder = row["holder_subject"] or detail.get("holder") or row["subject"]
    if detail.get("result") in UNDISCLOSED or not detail.get("issuer") or not holder:
        return "", None
    return holder, disclosures.disclosure(
        record_at=[detail["issuer"], detail.get("division")],
        discloser=VERIFICATION,
        action="certificate.verified",
        recipient=row["client_id"],
        recipient_division=detail.get("division"),
        purpose=row["purpose"] or "verification",
        disclosed_at=row["at"],
        certificate_number=detail.get("certificate_number"),
        issuer=detail["issuer"],
        result=detail["result"],
    )
