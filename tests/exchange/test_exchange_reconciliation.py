"""Reconciliation finds exactly the planted differences between two registries, and resolves them."""

from __future__ import annotations

import asyncio
import time

import pytest

from devstack.credentials import EXCHANGE_SERVICE
from devstack.stack import Stack
from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.service_layer import reconciliation
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import create_pool
from tests.exchange.exchange_helpers import A, B, C
from tests.exchange.exchange_seed import plant, seed_side, subject_of
from tests.helpers import Api, query, wait_until

pytestmark = pytest.mark.e2e
SUBJECTS = 10_000


def test_reconciliation_finds_exactly_the_planted_differences(xstack: Stack) -> None:
    dsn_a, dsn_c = xstack.service(f"registry-{A}").dsn, xstack.service(f"registry-{C}").dsn
    tag = "t1"

    async def seed() -> dict[str, str]:
        await asyncio.gather(
            seed_side(dsn_a, A, A, C, tag, SUBJECTS), seed_side(dsn_c, C, A, C, tag, SUBJECTS)
        )
        return {
            "missing": await plant(dsn_a, A, dsn_c, C, tag, 3, "missing_birth"),
            "conflict": await plant(dsn_a, A, dsn_c, C, tag, 10, "marriage_date"),
            "duplicate": await plant(dsn_a, A, dsn_c, C, tag, 6, "duplicate_birth"),
            # the same birth registered twice, and both sides hold both: the digests agree
            "both": await plant(dsn_a, A, dsn_c, C, tag, 9, "duplicate_birth"),
            "both_c": await plant(dsn_c, C, dsn_a, A, tag, 9, "duplicate_birth"),
        }

    keys = asyncio.run(seed())
    operator = Api(xstack, "migrant_exchange", "operator")
    operator.http.timeout = 60
    started = time.monotonic()
    r = operator.post("/v1/reconciliations", {"division_a": A, "division_b": C})
    elapsed = time.monotonic() - started
    assert r.status_code == 201, r.text
    run = r.json()
    assert elapsed < 10, f"reconciliation of {SUBJECTS} subjects took {elapsed:.1f}s"
    assert (run["division_a"], run["division_b"]) == (C, A)  # one pair whichever way it is named
    assert run["records_a"] >= SUBJECTS and run["discrepancies"] == 4, run
    assert run["by_kind"] == {"missing": 1, "field_conflict": 1, "duplicate": 2}

    found = operator.get("/v1/discrepancies", reconciliation_id=run["reconciliation_id"]).json()
    # The operator reads no subject key and no record key: the exchange keeps them, by case id.
    held = {
        str(h["id"]): h
        for h in query(
            xstack.service("migrant_exchange").dsn,
            "SELECT id, subject, record_key FROM discrepancies WHERE reconciliation_id = $1",
            run["reconciliation_id"],
        )
    }
    got = {
        (d["kind"], held[d["id"]]["subject"], d["record_kind"], held[d["id"]]["record_key"]) for d in found
    }
    assert got == {
        ("missing", subject_of(tag, 3), "birth", keys["missing"]),
        ("field_conflict", subject_of(tag, 10), "marriage", keys["conflict"]),
        ("duplicate", subject_of(tag, 6), "birth", keys["duplicate"]),
        ("duplicate", subject_of(tag, 9), "birth", keys["both"]),
    }
    assert all(d["subject"] is None and d["record_key"] is None for d in found)
    assert keys["both"] == keys["both_c"]
    both = next(d for d in found if held[d["id"]]["record_key"] == keys["both"])
    assert both["duplicated_at"] is None and sorted(both["detail"]["duplicated_at"]) == sorted([A, C])
    by_kind = {d["kind"]: d for d in found if d["id"] != both["id"]}
    assert by_kind["missing"]["missing_at"] == C
    assert by_kind["field_conflict"]["fields"] == ["marriage_date"]
    assert by_kind["duplicate"]["duplicated_at"] == A
    assert "P" + tag not in r.text + str(found)  # no identity numbers reach the exchange's answers
    originals = [f"B{tag}{i:08d}" for i in (6, 9)]  # what the duplicates duplicate (detail.duplicate_of)
    assert not [k for k in [*keys.values(), *originals] if k in str(found)]  # nor record keys

    # Resolving the duplicate has its owner A retire it and tell C; the case waits for C's feedback.
    dup = by_kind["duplicate"]
    wrong = operator.post(f"/v1/discrepancies/{dup['id']}/resolution", {"action": "correct", "owner": C})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "owner"
    done = operator.post(f"/v1/discrepancies/{dup['id']}/resolution", {"action": "correct", "owner": A})
    assert done.status_code == 202, done.text
    assert done.json()["state"] == "open" and done.json()["resolution"]["sender"] == A
    assert not query(dsn_a, "SELECT 1 FROM births WHERE medical_certificate_number = $1", keys["duplicate"])
    resolved = wait_until(
        lambda: [
            d
            for d in operator.get("/v1/discrepancies", state="resolved", jurisdiction=C).json()
            if d["id"] == dup["id"]
        ],
        timeout=10,
    )[0]
    assert resolved["repair_state"] == "applied" and resolved["resolution"]["correction_event_id"]
    routed = query(
        xstack.service("migrant_exchange").dsn,
        "SELECT target_division, state FROM notifications WHERE event_id = $1::uuid",
        resolved["resolution"]["correction_event_id"],
    )
    assert [(r["target_division"], r["state"]) for r in routed] == [(C, "applied")]  # C answered it
    again = operator.post(f"/v1/discrepancies/{dup['id']}/resolution", {"action": "dismiss"})
    assert again.status_code == 409

    # A second run finds the three that are left and opens nothing new.
    second = operator.post("/v1/reconciliations", {"division_a": A, "division_b": C}).json()
    assert second["discrepancies"] == 3 and second["opened"] == 0 and second["cleared"] == 0
    open_cases = operator.get("/v1/discrepancies", state="open", jurisdiction=C).json()
    assert {d["kind"] for d in open_cases if d["kind"] != "sequence_gap"} == {
        "missing",
        "field_conflict",
        "duplicate",
    }


def test_a_scheduled_round_reconciles_every_agreed_pair_of_registries(xstack: Stack) -> None:
    exchange_db = xstack.service("migrant_exchange").dsn
    urls = ",".join(
        f"{s.jurisdictions[0]}={s.url}" for s in xstack.services if s.module == "services.registry"
    )
    settings = ExchangeSettings(
        database_url=exchange_db, registry_urls=urls, registry_token=xstack.token(EXCHANGE_SERVICE)
    )

    async def round_() -> list[dict]:
        pool = await create_pool(exchange_db, min_size=1, max_size=3)
        registries = RegistryClient(settings)
        try:
            return await reconciliation.run_scheduled(pool, settings, registries)
        finally:
            await registries.close()
            await pool.close()

    done = asyncio.run(round_())
    assert sorted((r["division_a"], r["division_b"]) for r in done) == sorted([(C, A), (A, B), (C, B)])
    runs = query(
        exchange_db,
        "SELECT state FROM reconciliations WHERE trigger = 'schedule' AND id = ANY($1::uuid[])",
        [r["reconciliation_id"] for r in done],
    )
    assert [r["state"] for r in runs] == ["finished"] * 3
