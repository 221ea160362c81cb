"""The hash-chained audit log notices an edited, deleted or reordered row (real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg
import pytest

from shared import audit
from shared.db import init_connection, migrate

N = 12


async def _chain(dsn: str, tmp_path: Path) -> asyncpg.Connection:
    (tmp_path / "none").mkdir()
    await migrate(dsn, "audit_test", tmp_path / "none")
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    async with conn.transaction():
        await audit.append(
            conn,
            [
                audit.AuditEntry(
                    f"client-{i % 3}",
                    "read",
                    "maternal_care",
                    f"{i:032x}",
                    {"n": i},
                    t0 + dt.timedelta(seconds=i),
                )
                for i in range(1, N + 1)
            ],
        )
    assert await audit.verify_chain(conn) is None
    return conn


@pytest.mark.parametrize(
    ("tamper", "first_break"),
    [
        ("UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 5", 5),
        ("UPDATE audit_log SET client_id = 'someone-else' WHERE seq = 1", 1),
        ("UPDATE audit_log SET at = at - interval '1 hour' WHERE seq = 9", 9),
        ("DELETE FROM audit_log WHERE seq = 7", 7),
        ("DELETE FROM audit_log WHERE seq = 1", 1),
        # reorder: rows 3 and 4 trade places (content swapped, sequence numbers kept)
        (
            """UPDATE audit_log a SET at = b.at, client_id = b.client_id, subject = b.subject, detail = b.detail,
                      prev_hash = b.prev_hash, hash = b.hash
               FROM audit_log b WHERE (a.seq, b.seq) IN ((3, 4), (4, 3))""",
            3,
        ),
        # renumbering after a deletion, to hide the gap
        ("DELETE FROM audit_log WHERE seq = 6; UPDATE audit_log SET seq = seq - 1 WHERE seq > 6", 6),
    ],
)
async def test_tampering_is_found_at_the_first_changed_row(
    fresh_db: str, tmp_path: Path, tamper: str, first_break: int
) -> None:
    conn = await _chain(fresh_db, tmp_path)
    try:
        await conn.execute("SET session_replication_role = replica")  # a superuser, triggers off
        await conn.execute(tamper)
        assert await audit.verify_chain(conn, batch=5) == first_break
    finally:
        await conn.close()


async def test_a_cut_off_tail_is_found_with_an_anchor(fresh_db: str, tmp_path: Path) -> None:
    conn = await _chain(fresh_db, tmp_path)
    try:
        anchor = await audit.head(conn)
        assert anchor is not None and anchor[0] == N
        await conn.execute("SET session_replication_role = replica")  # a superuser, triggers off
        await conn.execute("DELETE FROM audit_log WHERE seq > $1", N - 2)
        await conn.execute("RESET session_replication_role")
        assert await audit.verify_chain(conn) is None  # the chain alone cannot see it
        assert await audit.verify_chain(conn, anchor=anchor) == N - 1
    finally:
        await conn.close()


async def test_appends_continue_the_chain(fresh_db: str, tmp_path: Path) -> None:
    conn = await _chain(fresh_db, tmp_path)
    try:
        anchor = await audit.head(conn)
        async with conn.transaction():
            await audit.append(conn, [audit.AuditEntry("client-x", "verify", "registration")])
        assert await audit.verify_chain(conn, anchor=anchor) is None
    finally:
        await conn.close()


async def test_a_disclosure_reported_in_another_offset_keeps_the_chain_intact(
    fresh_db: str, tmp_path: Path
) -> None:
    """A peer may state a disclosure's time in any offset (``disclosed_at: "...+08:00"``, valid
    for the contract); the registry appends it at that instant. The database keeps the instant,
    not the offset, so the hash must be of the instant too: a chain hashed over "+08:00" and
    recomputed over "+00:00" looked tampered from that row on (a false alarm that hides real
    tampering after it), whoever sent such a time."""
    import uuid

    from services.registry.service_layer.disclosures import record_all_reported
    from shared.events.catalog import parse_event

    (tmp_path / "none").mkdir()
    await migrate(fresh_db, "audit_test", tmp_path / "none")
    entry = {
        "subject": "ab" * 16,
        "disclosure_id": str(uuid.uuid4()),
        "action": "notification.fetched",
        "recipient": "reg-110101",
        "recipient_division": "110101",
        "purpose": "registration",
        "event_type": "migration.arrived.v1",
    }
    event = parse_event(
        {
            "id": str(uuid.uuid4()),
            "source": "/exchange",
            "type": "disclosure.batch.v1",
            "subject": "cd" * 16,
            "time": "2026-12-05T21:00:00+08:00",
            "dataschema": "https://example.invalid/disclosure.batch.v1.json",
            "sequence": 1,
            "data": {
                "batch_id": str(uuid.uuid4()),
                "record_at": ["320412"],
                "discloser": "exchange",
                "entries": [
                    {**entry, "disclosed_at": "2026-12-05T21:00:00.123456+08:00"},
                    {
                        **entry,
                        "disclosure_id": str(uuid.uuid4()),
                        "disclosed_at": "2026-12-05T08:00:00-05:00",
                    },
                ],
            },
        }
    )
    conn = await asyncpg.connect(fresh_db)
    await init_connection(conn)
    try:
        async with conn.transaction():
            await record_all_reported(conn, [event])
            await audit.append(conn, [audit.AuditEntry("client-x", "person.read", "registration")])
        assert await audit.verify_chain(conn) is None
        assert await audit.verify_chain(conn, anchor=await audit.head(conn)) is None
    finally:
        await conn.close()
