"""Only the issuer revokes what it issued: a peer, signing with its own trusted key, names itself
as issuer and revokes another issuer's certificate number.

The consumers refuse it (``authority``: an issuer speaks only of the numbers it minted). Should
such an event reach a store all the same (a replay from a producer's outbox applies events
without the consumers' checks), the stores revoke a certificate only on its own issuer's word.
The consumer path reproduced here is the one ``EventConsumer._admit`` runs for every message:
``parse_event(doc)``, ``check(event, doc)``, then ``apply_one`` (inbox + handler).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.registry.service_layer.counterpart import apply_notification
from services.registry.settings import RegistrySettings
from services.verification.domain.verdict import verdict
from services.verification.service_layer import messagebus as verification_bus
from services.verification.settings import VerificationSettings
from shared import signing
from shared.consumer import EventConsumer
from shared.db import create_pool, migrate
from shared.events.catalog import parse_event
from shared.events.signature import NOT_AUTHORIZED, Rejected, sign_value
from shared.identity import subject_key
from shared.trust import DivisionTrust, PublicKey, TrustList
from tests.exchange.exchange_helpers import event
from tests.helpers import notification, person_id

ISSUER, PEER, THIRD = "320412", "440703", "110101"
KEYS = {party: signing.new_private_key() for party in (ISSUER, PEER)}
TRUST = TrustList(
    divisions={
        party: DivisionTrust(
            signing_keys=[PublicKey(kid=f"{party}-k", public_key=signing.b64u(signing.public_bytes(key)))]
        )
        for party, key in KEYS.items()
    }
)
SECRET = b"review-secret"


def _signed(event_type: str, signer: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """The published JSON of an event from ``/registry/<signer>``, signed with its own trusted key."""
    made = event(event_type, signer, data, subject, 1)
    value = sign_value(made.model_dump_json(exclude_none=True).encode(), f"{signer}-k", KEYS[signer])
    doc: dict[str, Any] = orjson.loads(value)
    return doc


def _issued(number: str, holder: str) -> dict[str, Any]:
    """ISSUER's certificate ``number`` of ``holder``."""
    return {
        "certificate_number": number,
        "holder_id_number": holder,
        "holder_name": "陈静",
        "marital_status": "married",
        "children_birth_dates": [],
        "issuer": ISSUER,
        "issued_on": dt.date.today().isoformat(),
        "valid_until": (dt.date.today() + dt.timedelta(days=180)).isoformat(),
        "key_id": f"{ISSUER}-cert",
        "status_index": 7,
        "token": "x.y.z",
    }


def _revoked(number: str, issuer: str) -> dict[str, Any]:
    """A revocation of ``number`` by ``issuer``."""
    return {
        "certificate_number": number,
        "issuer": issuer,
        "revoked_on": dt.date.today().isoformat(),
        "reason": "revoked by its issuer" if issuer == ISSUER else "forged by a peer",
        "status_index": 0,
    }


def test_verification_keeps_a_certificate_another_issuer_revokes(fresh_db: str) -> None:
    """PEER signs ``certificate.revoked.v1`` naming itself as issuer but ISSUER's certificate
    number: the consumer refuses it, and applied regardless it leaves the certificate valid."""

    async def run() -> None:
        await migrate(fresh_db, "verification", Path("services/verification/migrations"))
        pool = await create_pool(fresh_db, min_size=1, max_size=1)
        settings = VerificationSettings(database_url=fresh_db)
        consumer = EventConsumer(
            pool,
            settings,
            name="verification",
            topics=verification_bus.TOPICS,
            handler=verification_bus.handler(settings),
            trust=TRUST,
        )
        holder = person_id("F")
        subject = subject_key(holder, SECRET)
        number = f"{ISSUER}-2026-ABCDEFGH"
        issued = _signed(
            "certificate.issued.v1",
            ISSUER,
            subject,
            _issued(number, holder),
        )
        forged = _signed(
            "certificate.revoked.v1",
            PEER,  # signed by PEER with its own, valid, trusted key ...
            subject,
            _revoked(number, PEER),  # ISSUER's number, PEER as issuer: authority() asks no more
        )
        try:
            async with pool.acquire() as conn:
                for doc in (issued, forged):
                    event = parse_event(doc)
                    if doc is forged:
                        with pytest.raises(Rejected) as refused:
                            consumer.check(event, doc)
                        assert refused.value.reason == NOT_AUTHORIZED
                    else:
                        consumer.check(event, doc)
                    async with conn.transaction():
                        assert await consumer.apply_one(conn, event)  # consumed, the lie as well
                row = await conn.fetchrow("SELECT * FROM certificates WHERE number = $1", number)
        finally:
            await pool.close()
        assert row["issuer"] == ISSUER and row["revoked_on"] is None
        assert verdict(dict(row), subject, dt.date.today()) == "valid"

    asyncio.run(run())


def test_a_registry_keeps_its_copy_of_a_certificate_another_issuer_revokes(fresh_db: str) -> None:
    """The same lie notified to a registry that keeps a copy of ISSUER's certificate: the copy stays
    valid, while ISSUER's own revocation of it is applied."""

    async def run() -> None:
        await migrate(fresh_db, "registry", Path("services/registry/migrations"))
        pool = await create_pool(fresh_db, min_size=1, max_size=1)
        settings = RegistrySettings(database_url=fresh_db, jurisdictions=THIRD)
        holder = person_id("F")
        number = f"{ISSUER}-2026-ABCDEFGH"
        issued = _issued(number, holder)
        revoked = _revoked(number, PEER)
        try:
            async with pool.acquire() as conn:
                async with conn.transaction():
                    await apply_notification(
                        conn, settings, notification(THIRD, "certificate.issued.v1", issued, source=ISSUER)
                    )
                async with conn.transaction():
                    await apply_notification(
                        conn, settings, notification(THIRD, "certificate.revoked.v1", revoked, source=PEER)
                    )
                held = "SELECT issuer, revoked_on FROM counterpart_certificates WHERE number = $1"
                lied = await conn.fetchrow(held, number)
                async with conn.transaction():
                    await apply_notification(
                        conn,
                        settings,
                        notification(
                            THIRD, "certificate.revoked.v1", _revoked(number, ISSUER), source=ISSUER
                        ),
                    )
                truth = await conn.fetchrow(held, number)
        finally:
            await pool.close()
        assert lied["issuer"] == ISSUER and lied["revoked_on"] is None
        assert truth["revoked_on"] is not None

    asyncio.run(run())
