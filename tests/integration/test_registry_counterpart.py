"""Applying counterpart notifications: pregnancy records only at the mother's own two registries."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import orjson

from services.registry.service_layer.counterpart import apply_notification
from services.registry.settings import RegistrySettings
from shared.db import create_pool, migrate
from shared.sensitivity import FIELDS_WITHHELD, NEUTRAL_CATEGORY
from tests.helpers import notification, person_id

ORIGIN, DEST, THIRD = "320412", "440703", "110101"


def test_pregnancy_applies_at_origin_and_is_refused_elsewhere(fresh_db: str) -> None:
    async def run() -> None:
        await migrate(fresh_db, "registry", Path("services/registry/migrations"))
        pool = await create_pool(fresh_db, min_size=1, max_size=1)
        conn = await pool.acquire()
        settings = RegistrySettings(database_url=fresh_db, jurisdictions=f"{ORIGIN},{THIRD}")
        mother = person_id("F")
        try:
            for here in (ORIGIN, THIRD):  # THIRD knows her, but is neither origin nor destination
                await conn.execute(
                    """INSERT INTO persons (jurisdiction, id_number, subject, name, sex, birth_date,
                                            hukou_division, residence_division, source_division)
                       VALUES ($1, $2, md5($2), '母亲', 'F', $3, $4, $5, $4)""",
                    here,
                    mother,
                    dt.date.fromisoformat(f"{mother[6:10]}-{mother[10:12]}-{mother[12:14]}"),
                    ORIGIN,
                    DEST,
                )
            pregnancy = {
                "pregnancy_id": str(uuid.uuid4()),
                "mother_id_number": mother,
                "registered_in": DEST,
                "registered_on": "2025-03-01",
            }
            for target in (ORIGIN, THIRD):
                async with conn.transaction():
                    await apply_notification(
                        conn, settings, notification(target, "pregnancy.registered.v1", pregnancy)
                    )
            kept = await conn.fetch("SELECT jurisdiction, source_division FROM pregnancies")
            assert [(r["jurisdiction"], r["source_division"]) for r in kept] == [(ORIGIN, DEST)]
            feedback = [
                orjson.loads(r["value"])["data"]
                for r in await conn.fetch(
                    "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id"
                )
            ]
            assert [f["outcome"] for f in feedback] == ["applied", "rejected"]
            assert "origin and destination" in feedback[1]["reason"]
            # A second pregnancy while one is open is a conflict, not a crash; its answer, beside her
            # subject key on the broker, names no field and no pregnancy (shared.sensitivity).
            other = {**pregnancy, "pregnancy_id": str(uuid.uuid4())}
            async with conn.transaction():
                await apply_notification(
                    conn, settings, notification(ORIGIN, "pregnancy.registered.v1", other)
                )
            last = orjson.loads(
                await conn.fetchval(
                    "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id DESC LIMIT 1"
                )
            )["data"]
            assert (last["outcome"], last["conflicts"]) == ("conflict", [])
            assert (
                last["reason"]
                == f"another open {NEUTRAL_CATEGORY} is recorded here for this mother {FIELDS_WITHHELD}"
            )
        finally:
            await pool.release(conn)
            await pool.close()

    asyncio.run(run())


def _birth(mother: str, certificate: str, **place: object) -> dict[str, object]:
    return {
        "birth_id": str(uuid.uuid4()),
        "medical_certificate_number": certificate,
        "child_name": "陈小青",
        "child_sex": "F",
        "child_birth_date": "2025-06-01",
        "mother_id_number": mother,
        "birth_order": 1,
        **place,
    }


def test_a_registry_applies_v1_and_v2_birth_notifications_the_same_way(fresh_db: str) -> None:
    """During the transition a notification of a v1 birth (sent before the exchange upgraded)
    and one of a v2 birth both land as births; the v1 one with its place's kind unknown."""

    async def run() -> None:
        await migrate(fresh_db, "registry", Path("services/registry/migrations"))
        pool = await create_pool(fresh_db, min_size=1, max_size=1)
        settings = RegistrySettings(database_url=fresh_db, jurisdictions=ORIGIN)
        old, new = person_id("F"), person_id("F")
        sent = {
            "birth.registered.v1": _birth(old, "A100000001", birth_division=DEST),
            "birth.registered.v2": _birth(
                new,
                "A100000002",
                birth_place={"division": DEST, "kind": "hospital", "institution": "湛江市妇幼保健院"},
            ),
        }
        try:
            async with pool.acquire() as conn:
                for event_type, payload in sent.items():
                    async with conn.transaction():
                        await apply_notification(conn, settings, notification(ORIGIN, event_type, payload))
                outcomes = [
                    orjson.loads(r["value"])["data"]["outcome"]
                    for r in await conn.fetch(
                        "SELECT value FROM outbox WHERE event_type = 'exchange.feedback.v1' ORDER BY id"
                    )
                ]
                rows = await conn.fetch(
                    """SELECT mother_id_number, birth_division, birth_place_kind, birth_institution, child_name
                       FROM births WHERE jurisdiction = $1 ORDER BY medical_certificate_number""",
                    ORIGIN,
                )
        finally:
            await pool.close()
        assert outcomes == ["applied", "applied"]
        assert [tuple(r) for r in rows] == [
            (old, DEST, None, None, "陈小青"),
            (new, DEST, "hospital", "湛江市妇幼保健院", "陈小青"),
        ]

    asyncio.run(run())
