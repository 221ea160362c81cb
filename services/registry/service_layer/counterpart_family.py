"""Applying a counterpart's marriages, pregnancies, corrections and certificates to our records.

Each function answers (outcome, conflicts, reason) for the feedback; none raises for a
disagreement with our records, so one bad notification never blocks the others.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from services.registry.adapters import counterpart_certificates as certs
from services.registry.adapters import family, records
from services.registry.adapters import repository as repo
from services.registry.service_layer import corrections, repairs
from shared.errors import DomainError

Outcome = tuple[str, list[dict[str, Any]], str | None]
SPOUSES = ("spouse_a_id_number", "spouse_b_id_number")


Target = repairs.Target


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _diff(ours: dict[str, Any], theirs: dict[str, Any], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"field": f, "ours": _plain(ours.get(f)), "theirs": _plain(theirs.get(f))}
        for f in fields
        if _plain(ours.get(f)) != _plain(theirs.get(f))
    ]


async def apply_marriage(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    here = t.here
    same = await family.get_marriage(conn, here, d["marriage_id"])
    if same is not None:
        conflicts = _diff(dict(same), d, (*SPOUSES, "marriage_date"))
        return (
            ("conflict", conflicts, "this marriage is recorded here otherwise") if conflicts else _applied()
        )
    conflicts = []
    for field in SPOUSES:
        if await family.active_marriage(conn, here, d[field]):
            conflicts.append({"field": field, "ours": "married", "theirs": "marrying"})
    if conflicts:
        return "conflict", conflicts, "a spouse has another active marriage in our records"
    await family.insert_marriage(conn, here, d, t.source, t.event_id)
    return _applied()


async def apply_dissolution(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    row = await family.get_marriage(conn, t.here, d["marriage_id"], lock=True)
    if row is None:
        return "rejected", [], "the marriage is not in our records"
    if row["dissolution_date"] is not None:
        theirs = {"dissolution_date": d["dissolution_date"], "dissolution_reason": d["reason"]}
        conflicts = _diff(dict(row), theirs, ("dissolution_date", "dissolution_reason"))
        return ("conflict", conflicts, "the marriage ended otherwise here") if conflicts else _applied()
    if d["dissolution_date"] < row["marriage_date"]:
        return "conflict", _diff(dict(row), d, ("marriage_date",)), "dissolution before the marriage date"
    await family.dissolve_marriage(conn, t.here, d["marriage_id"], d["dissolution_date"], d["reason"])
    return _applied()


async def apply_pregnancy(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    """Kept only if we are the mother's origin or destination (DESIGN.md section 8)."""
    here = t.here
    mother = await repo.get_person(conn, here, d["mother_id_number"])
    if mother is None or here not in (mother["hukou_division"], mother["residence_division"]):
        return "rejected", [], "pregnancy records are kept only by the mother's origin and destination"
    if await family.get_pregnancy(conn, here, d["pregnancy_id"]) is not None:
        return _applied()
    open_one = await family.open_pregnancy(conn, here, d["mother_id_number"])
    if open_one is not None:
        conflicts = [{"field": "pregnancy_id", "ours": str(open_one["id"]), "theirs": str(d["pregnancy_id"])}]
        return "conflict", conflicts, "another open pregnancy is recorded here for this mother"
    await family.insert_pregnancy(conn, here, d, t.source, t.event_id)
    return _applied()


async def apply_pregnancy_closed(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    row = await family.get_pregnancy(conn, t.here, d["pregnancy_id"], lock=True)
    if row is None:
        return "rejected", [], "the pregnancy is not in our records"
    if row["closed_on"] is not None:
        conflicts = _diff(dict(row), d, ("closed_on", "outcome"))
        return ("conflict", conflicts, "the pregnancy was closed otherwise here") if conflicts else _applied()
    await family.close_pregnancy(conn, t.here, d["pregnancy_id"], d["closed_on"], d["outcome"])
    return _applied()


async def apply_correction(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    """A counterpart corrects only the records it is the source of (DESIGN section 10); a record
    another jurisdiction recorded, ours included, is answered ``conflict`` and left as it is.
    A repair of a reconciliation case (a whole record, or a duplicate retired) is applied by
    ``repairs.apply_repair``, which keeps the same rule."""
    repaired = await repairs.apply_repair(conn, t, d)
    if repaired is not None:
        return repaired
    record = await records.get_record(conn, t.here, d["record_type"], d["record_id"])
    if record is None:
        return "rejected", [], f"the corrected {d['record_type']} is not in our records"
    owner = record.get("source_division") or t.here  # certificates are only ever our own
    if owner != t.source:
        conflict = {"field": "source_division", "ours": owner, "theirs": t.source}
        return "conflict", [conflict], "the record is not the correcting jurisdiction's"
    try:
        async with conn.transaction():  # a savepoint: a refused correction leaves our record as it was
            _, _, previous = await corrections.check_and_apply(conn, t.here, d, check_event=False)
            await records.insert_correction(conn, t.here, d, previous, t.source, t.event_id)
    except DomainError as e:
        return "conflict", [{"field": e.field or "record_id", "ours": None, "theirs": None}], e.rule
    except asyncpg.IntegrityConstraintViolationError as e:
        return "conflict", [], f"the correction conflicts with our records ({e.constraint_name})"
    return _applied()


async def apply_certificate_issued(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    """A counterpart's certificate to a person we share: kept as a copy, the issuer's register decides."""
    held = await certs.get_copy(conn, t.here, d["certificate_number"])
    if held is None:
        await certs.insert_copy(conn, t.here, d, t.source, t.event_id)
        return _applied()
    conflicts = _diff(dict(held), d, ("holder_id_number", "issuer", "issued_on", "valid_until"))
    return ("conflict", conflicts, "this certificate is recorded here otherwise") if conflicts else _applied()


async def apply_certificate_revoked(conn: asyncpg.Connection, t: Target, d: dict[str, Any]) -> Outcome:
    await certs.revoke_copy(conn, t.here, d["certificate_number"], d["revoked_on"])
    return _applied()  # a copy we never held has nothing left to revoke


def _applied() -> Outcome:
    return "applied", [], None
