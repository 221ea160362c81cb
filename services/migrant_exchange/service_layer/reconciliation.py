"""Reconciliation (清理清查) of a jurisdiction pair, and resolving the cases it opens."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from services.migrant_exchange.adapters import discrepancies as cases
from services.migrant_exchange.adapters import reconciliations as runs
from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.adapters.registries import RegistryClient
from services.migrant_exchange.domain import repairs
from services.migrant_exchange.domain.reconcile import (
    Difference,
    Record,
    differences,
    differing_buckets,
    held_at,
    held_by,
    held_twice,
    set_aside,
)
from services.migrant_exchange.service_layer.agreements import as_agreed
from services.migrant_exchange.settings import ExchangeSettings
from shared.db import unit_of_work
from shared.errors import Conflict, DomainError, NotFound, RuleViolation, fault_text

log = logging.getLogger(__name__)
DRILL_CHUNK = 2048  # buckets per drill-down request
_SCHEDULE_LOCK = 0x72636E  # advisory lock: one scheduled round at a time per database


def _digest_map(doc: dict[str, Any]) -> dict[int, tuple[int, str]]:
    return {int(bucket): (int(count), str(digest)) for bucket, count, digest in doc["digests"]}


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Compare what two jurisdictions' registries keep of the people they share."""

    division_a: str
    division_b: str
    trigger: Literal["request", "schedule"]


@dataclass(frozen=True, slots=True)
class Resolve:
    """Close a discrepancy case: ``dismiss`` with a note, or ``correct`` by a repair."""

    case_id: uuid.UUID
    action: Literal["correct", "dismiss"]
    owner: str | None  # for ``correct``: where the record was registered, when the sides disagree
    note: str | None
    client_id: str


async def reconcile(
    pool: asyncpg.Pool, settings: ExchangeSettings, registries: RegistryClient, command: Reconcile
) -> dict[str, Any]:
    """Compare both sides of (a, b): digests per bucket, then the records of differing buckets.

    The records one of the pair holds and the other was never sent (``held_by``) are set aside on
    drill-down and remembered: the next run has the registries leave them out of their digests,
    so the pair's digests agree where nothing else differs, and her bucket is not drilled again.
    Each registry is asked to leave out only the records it holds: the other was never sent them,
    and is not told their keys (``held_at``).

    Every difference becomes an open discrepancy case (an open case found again is kept, not
    duplicated); open cases of the pair that this run no longer finds are resolved as cleared.
    The run is recorded even when a registry cannot be reached.
    """
    a, b = sorted((command.division_a, command.division_b))
    if a == b:
        raise RuleViolation(
            "a reconciliation compares two different jurisdictions", field="division_b", rule="distinct-pair"
        )
    n = settings.reconciliation_buckets
    started = time.monotonic()
    async with pool.acquire() as conn:
        run_id = await runs.start_run(conn, a, b, command.trigger, n)
    try:
        async with pool.acquire() as conn:
            remembered = await runs.set_aside(conn, a, b)
            known = await repo.holders_of_many(conn, remembered)
        left_out = sorted(set_aside((a, b), remembered, known))
        doc_a, doc_b = await asyncio.gather(  # each told only of what it holds
            registries.digests(a, b, n, held_at(a, left_out, known)),
            registries.digests(b, a, n, held_at(b, left_out, known)),
        )
        differing = differing_buckets(_digest_map(doc_a), _digest_map(doc_b))
        left, right = await _drill(registries, a, b, n, differing)
        async with pool.acquire() as conn:
            holders = await repo.holders_of_many(conn, [r.held for r in left + right])
        aside = set_aside((a, b), [r.held for r in left + right], holders)
        left, right = held_by((a, b), left, holders), held_by((a, b), right, holders)
        found = as_agreed(settings, a, b, differences(a, b, left, right))
        found += held_twice(a, b, doc_a.get("duplicates", []), doc_b.get("duplicates", []), found)
        async with unit_of_work(pool, wake=False) as conn:
            opened, cleared = await _record_cases(conn, a, b, run_id, found)
            await runs.keep_set_aside(conn, a, b, aside | set(left_out))
            await runs.finish_run(
                conn, run_id, doc_a["records"], doc_b["records"], len(differing), len(found)
            )
    except Exception as e:
        async with pool.acquire() as conn:
            await runs.fail_run(conn, run_id, failure_text(e))
        raise
    seconds = round(time.monotonic() - started, 3)
    log.info("reconciliation finished", extra={"pair": f"{a}-{b}", "found": len(found), "seconds": seconds})
    return {
        "reconciliation_id": run_id,
        "division_a": a,
        "division_b": b,
        "state": "finished",
        "records_a": doc_a["records"],
        "records_b": doc_b["records"],
        "buckets": n,
        "differing_buckets": len(differing),
        "discrepancies": len(found),
        "opened": opened,
        "cleared": cleared,
        "by_kind": {
            k: sum(1 for d in found if d.kind == k) for k in ("missing", "field_conflict", "duplicate")
        },
        "seconds": seconds,
    }


async def _drill(
    registries: RegistryClient, a: str, b: str, n: int, differing: list[int]
) -> tuple[list[Record], list[Record]]:
    """Both sides' records of the differing buckets, a chunk of buckets per request."""
    left: list[Record] = []
    right: list[Record] = []
    for i in range(0, len(differing), DRILL_CHUNK):
        chunk = differing[i : i + DRILL_CHUNK]
        la, lb = await asyncio.gather(registries.records(a, b, n, chunk), registries.records(b, a, n, chunk))
        left += [Record.of(r) for r in la]
        right += [Record.of(r) for r in lb]
    return left, right


async def _record_cases(
    conn: asyncpg.Connection, a: str, b: str, run_id: uuid.UUID, found: list[Difference]
) -> tuple[int, int]:
    """Opens a case per difference (one still open is kept) and clears those no longer found:
    (opened, cleared)."""
    opened = 0
    for d in found:
        case = {**d.__dict__, "division_a": a, "division_b": b, "reconciliation_id": run_id}
        opened += await cases.open_case(conn, case) is not None
    cleared = await cases.clear_not_found(
        conn, a, b, [(d.kind, d.subject, d.record_key) for d in found], run_id
    )
    return opened, cleared


async def scheduled_pairs(conn: asyncpg.Connection, settings: ExchangeSettings) -> list[tuple[str, str]]:
    """Every pair of configured registries that an agreement (specific or '*') connects."""
    codes = sorted(settings.registries)
    pairs = [(x, y) for i, x in enumerate(codes) for y in codes[i + 1 :]]
    return [(x, y) for x, y in pairs if await repo.agreement(conn, x, y) is not None]


def failure_text(exc: BaseException) -> str:
    """Why a run failed, as the run's record keeps it for operators: a domain error's own detail
    (written never to echo a value: which registry, what it answered), any other error by its
    class, SQLSTATE and constraint. Never an error's text: a driver error's DETAIL quotes the row
    it refused, and the rows of a run are people's records."""
    return exc.detail if isinstance(exc, DomainError) else fault_text(exc)


async def run_scheduled(
    pool: asyncpg.Pool, settings: ExchangeSettings, registries: RegistryClient
) -> list[dict[str, Any]]:
    """One scheduled round: reconcile every agreed pair; one replica at a time, one failure spares the rest."""
    done: list[dict[str, Any]] = []
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _SCHEDULE_LOCK):
            return done  # another replica is at it
        try:
            for a, b in await scheduled_pairs(conn, settings):
                try:
                    done.append(await reconcile(pool, settings, registries, Reconcile(a, b, "schedule")))
                except Exception as e:
                    log.warning(
                        "scheduled reconciliation failed",
                        extra={"pair": f"{a}-{b}", "error": type(e).__name__},
                    )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _SCHEDULE_LOCK)
    return done


async def resolve(pool: asyncpg.Pool, registries: RegistryClient, command: Resolve) -> dict[str, Any]:
    """``dismiss`` closes a case with a note; ``correct`` has a registry send the repair
    (``domain/repairs.py``), and the case stays open until the lacking side's feedback says
    ``applied`` (``repair_answered``), with the reason when it says otherwise."""
    case_id = command.case_id
    async with unit_of_work(pool, wake=False) as conn:
        case = await cases.get_case(conn, case_id, lock=True)
        if case is None:
            raise NotFound("no discrepancy with this id", field="discrepancy_id", rule="exists")
        if case["state"] != "open":
            raise Conflict("the discrepancy is already resolved", field="discrepancy_id", rule="open-only")
        if cases.repair_in_flight(case, dt.datetime.now(dt.UTC)):
            raise Conflict(
                "a repair of this case awaits the counterpart's feedback",
                field="discrepancy_id",
                rule="repair-in-flight",
            )
        resolution: dict[str, Any] = {"action": command.action, "by": command.client_id, "note": command.note}
        if command.action != "correct":
            await cases.resolve_case(conn, case_id, resolution)
            return dict(await cases.get_case(conn, case_id) or {})
        plan = repairs.plan(case, command.owner)
        repair_id = uuid.uuid4()
        await cases.request_repair(conn, case_id, repair_id, {**resolution, **plan.as_resolution()})
    await _send_repair(pool, registries, case, plan, repair_id)
    async with pool.acquire() as conn:
        return dict(await cases.get_case(conn, case_id) or {})


async def _send_repair(
    pool: asyncpg.Pool,
    registries: RegistryClient,
    case: asyncpg.Record,
    plan: repairs.RepairPlan,
    repair_id: uuid.UUID,
) -> None:
    """Ask the sender's registry for the repair; committed first, so its routing finds the case."""
    body = {
        "jurisdiction": plan.sender,
        "counterpart": plan.target,
        "subject": case["subject"],
        "kind": case["record_kind"],
        "key": plan.key,
        "action": plan.action,
        "kept_key": plan.kept_key,
        "repair_id": str(repair_id),
        "discrepancy_id": str(case["id"]),
    }
    try:
        answer = await registries.correct(body)
    except DomainError as e:
        async with pool.acquire() as conn:
            await cases.repair_failed(conn, repair_id, e.detail)
        raise
    async with pool.acquire() as conn:
        await cases.repair_sent(conn, repair_id, str(answer["event_id"]))
