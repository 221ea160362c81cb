"""What a registry takes for its own events in its outbox (repairs: "our own record, sent back",
our own certificate reissued with our own revocations) excludes the copies of messages its
consumers dead-lettered. Such a copy is queued in the same outbox for ``<topic>.dlq`` under the
key and type the refused message claimed, its value as it came: a forgery naming this registry
as its source must not become one of its own events (real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from services.registry.adapters import repairs as repo
from shared import dead_letters
from shared.db import init_connection, migrate

HERE = "320412"
SUBJECT = "f04cab03f31bccd87ba75d3460b19d91"


async def test_a_dead_lettered_forgery_is_not_taken_for_our_own_event(fresh_db: str) -> None:
    await migrate(fresh_db, "registry", Path("services/registry/migrations"))
    forged = orjson.dumps(
        {"specversion": "1.0", "id": "0193f5b8-0000-7000-8000-000000000001", "source": f"/registry/{HERE}",
         "type": "certificate.revoked.v1", "subject": SUBJECT,
         "data": {"certificate_number": f"{HERE}-2026-FORGED01", "revoked_on": "2026-01-01", "reason": "forged"}}
    )  # fmt: skip
    headers = [("ce_type", b"certificate.revoked.v1"), ("ce_source", f"/registry/{HERE}".encode())]
    msg = ConsumerRecord(
        "certificate.lifecycle.v1", 0, 9, 0, 0, SUBJECT.encode(), forged, None, 32, len(forged), headers
    )
    conn = await asyncpg.connect(fresh_db)
    await init_connection(conn)  # the services' codecs (JSON headers)
    try:
        async with conn.transaction():
            await dead_letters.keep(
                conn, msg, "rejected: bad_signature", consumer="counterpart", service="registry"
            )
        copy = await conn.fetchrow("SELECT event_id, event_type, key FROM outbox WHERE topic LIKE '%.dlq'")
        assert (copy["event_type"], copy["key"]) == ("certificate.revoked.v1", SUBJECT)  # as it claimed

        assert await repo.own_events_of(conn, SUBJECT, "certificate.revoked.v1") == []
        assert await repo.own_event(conn, HERE, copy["event_id"]) is None
    finally:
        await conn.close()
