"""The append-only, hash-chained audit log of disclosures and verifications.

Each row's hash covers its content and the previous row's hash, so editing, deleting or
reordering any row breaks the chain from that row on; ``verify_chain`` names the first break.
Appends take a transaction-scoped advisory lock so the chain stays linear across writers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import asyncpg
import orjson

GENESIS = b"\x00" * 32
_AUDIT_LOCK = 0x617564  # advisory lock id for appends
_COLUMNS = ["seq", "at", "client_id", "action", "purpose", "subject", "detail", "prev_hash", "hash"]


@dataclass(frozen=True)
class AuditEntry:
    client_id: str
    action: str
    purpose: str | None = None
    subject: str | None = None  # pseudonymous subject key, never a raw identity number
    detail: dict[str, object] = field(default_factory=dict)
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def _instant(at: dt.datetime) -> str:
    """The time as the database keeps it (timestamptz: the instant, in UTC; a naive time taken
    as UTC, as asyncpg stores it), so a row read back hashes as it was appended, whatever
    offset a reporting party stated its time in."""
    return (at.astimezone(dt.UTC) if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)).isoformat()


def entry_hash(prev: bytes, seq: int, e: AuditEntry) -> bytes:
    canonical = orjson.dumps(
        [seq, _instant(e.at), e.client_id, e.action, e.purpose, e.subject, e.detail],
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(prev + canonical).digest()


async def append(conn: asyncpg.Connection, entries: list[AuditEntry]) -> None:
    """Append entries in the caller's transaction (so a disclosure and its audit commit together)."""
    if not entries:
        return
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _AUDIT_LOCK)
    last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq, prev = (last["seq"], bytes(last["hash"])) if last else (0, GENESIS)
    rows = []
    for e in entries:
        seq += 1
        digest = entry_hash(prev, seq, e)
        rows.append((seq, e.at, e.client_id, e.action, e.purpose, e.subject, e.detail, prev, digest))
        prev = digest
    if len(rows) == 1:
        await conn.execute(
            """INSERT INTO audit_log (seq, at, client_id, action, purpose, subject, detail, prev_hash, hash)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)""",
            *rows[0],
        )
    else:  # binary COPY: a batch of a few thousand entries costs a fraction of row-by-row inserts
        await conn.copy_records_to_table("audit_log", records=rows, columns=_COLUMNS)


async def head(conn: asyncpg.Connection) -> tuple[int, bytes] | None:
    """The last (seq, hash) of the chain: an anchor to keep elsewhere, so a cut-off tail shows."""
    row = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    return (int(row["seq"]), bytes(row["hash"])) if row else None


async def hashes_at(conn: asyncpg.Connection, seqs: list[int]) -> dict[int, bytes]:
    """The stored hash of each of these rows that exists."""
    rows = await conn.fetch("SELECT seq, hash FROM audit_log WHERE seq = ANY($1::bigint[])", seqs)
    return {int(r["seq"]): bytes(r["hash"]) for r in rows}


async def verify_chain(
    conn: asyncpg.Connection, batch: int = 10_000, anchor: tuple[int, bytes] | None = None
) -> int | None:
    """Return the seq of the first row that breaks the chain, or None if the chain is intact.

    A chain cannot see rows deleted from its end; ``anchor`` (an earlier ``head``) can: the row
    it names must still be there with the same hash.
    """
    prev, expected_seq, after = GENESIS, 1, 0
    while True:
        rows = await conn.fetch("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2", after, batch)
        if not rows:
            if anchor is not None and (expected_seq - 1 < anchor[0]):
                return expected_seq
            return None
        for r in rows:
            entry = AuditEntry(r["client_id"], r["action"], r["purpose"], r["subject"], r["detail"], r["at"])
            if (
                r["seq"] != expected_seq
                or bytes(r["prev_hash"]) != prev
                or bytes(r["hash"]) != entry_hash(prev, r["seq"], entry)
            ):
                return int(r["seq"]) if r["seq"] == expected_seq else expected_seq
            if anchor is not None and r["seq"] == anchor[0] and bytes(r["hash"]) != anchor[1]:
                return int(r["seq"])
            prev, expected_seq, after = bytes(r["hash"]), expected_seq + 1, r["seq"]
