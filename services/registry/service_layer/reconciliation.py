"""Reconciliation as a registry answers it: digests, drill-down, and corrections it emits.

Nothing that leaves here names a person: subjects are pseudonymous keys, record values travel
only as keyed hashes (field by field on drill-down, so the exchange can say which field differs).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import asyncpg

from services.registry.adapters import reconciliation as repo
from services.registry.settings import RegistrySettings
from shared.errors import Forbidden, NotFound, RuleViolation
from shared.events import payloads as p
from shared.outbox import add_event


def check_pair(settings: RegistrySettings, jurisdiction: str, counterpart: str) -> None:
    if jurisdiction not in settings.served:
        raise Forbidden(
            "this registry does not keep the records of that jurisdiction",
            field="jurisdiction",
            rule="served-here",
        )
    if counterpart == jurisdiction:
        raise RuleViolation(
            "a reconciliation compares two different jurisdictions", field="counterpart", rule="distinct-pair"
        )


async def digests(
    conn: asyncpg.Connection, settings: RegistrySettings, jurisdiction: str, counterpart: str, buckets: int
) -> dict[str, Any]:
    """Counts and order-independent digests per bucket of the records shared with the counterpart,
    and the records this side holds twice."""
    check_pair(settings, jurisdiction, counterpart)
    rows = await repo.bucket_digests(conn, jurisdiction, counterpart, buckets)
    twice = await repo.duplicates(conn, jurisdiction, counterpart)
    return {
        "jurisdiction": jurisdiction,
        "counterpart": counterpart,
        "buckets": buckets,
        "records": sum(r["records"] for r in rows),
        "digests": [[r["bucket"], r["records"], str(r["digest"])] for r in rows],
        "duplicates": [[r["subject"], r["kind"], r["key"], r["first_key"]] for r in twice],
    }


def _keyed(secret: bytes, value: str) -> str:
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()[:16]


async def drill_down(
    conn: asyncpg.Connection,
    settings: RegistrySettings,
    jurisdiction: str,
    counterpart: str,
    buckets: int,
    selected: list[int],
) -> dict[str, Any]:
    """The records of the selected buckets: key, hash, identity and a keyed hash per field."""
    check_pair(settings, jurisdiction, counterpart)
    secret = settings.subject_key_secret.get_secret_value().encode()
    rows = await repo.bucket_records(conn, jurisdiction, counterpart, buckets, selected)
    return {
        "records": [
            {
                "subject": r["subject"],
                "kind": r["kind"],
                "key": r["key"],
                "hash": r["hash"],
                "identity": _keyed(secret, r["identity"]) if r["identity"] else None,
                "fields": {
                    name: _keyed(secret, value)
                    for name, value in zip(repo.FIELDS[r["kind"]], r["vals"], strict=True)
                },
            }
            for r in rows
        ]
    }


async def emit_correction(
    conn: asyncpg.Connection,
    settings: RegistrySettings,
    body: dict[str, Any],
) -> dict[str, Any]:
    """Resolve a discrepancy from the owning side: announce the authoritative record again.

    ``action`` "reannounce" publishes the record's current values as ``record.corrected.v1`` so
    the counterpart can bring its copy in line; "remove_duplicate" takes a birth registered twice
    out of this side's records and announces that.
    """
    here, other = body["jurisdiction"], body["counterpart"]
    check_pair(settings, here, other)
    kind, key, subject = body["kind"], body["key"], body["subject"]
    values = await repo.record_values(conn, here, other, subject, kind, key)
    if values is None:
        raise NotFound("this side does not hold the record", field="key", rule="record-held-by-owner")
    reason = f"reconciliation discrepancy {body['discrepancy_id']}"
    if body["action"] == "remove_duplicate":
        if kind != "birth" or not await repo.remove_birth(conn, here, key):
            raise RuleViolation("only a birth can be removed as a duplicate", field="kind", rule="birth-only")
        changes: dict[str, str | int | None] = {"status": "removed_as_duplicate"}
    else:
        changes = {k: (v if v != "" else None) for k, v in values.items()}
    hukou, residence = await repo.whereabouts(conn, here, subject)  # so the exchange routes it to both
    event = await add_event(
        conn,
        event_type="record.corrected.v1",
        source=f"/registry/{here}",
        subject=subject,
        data=p.RecordCorrectedV1(
            correction_id=uuid.uuid4(),
            corrected_event_id=uuid.UUID(body["discrepancy_id"]),
            record_type=kind,
            record_id=key[:64],
            changes=changes,
            reason=reason,
        ),
        origin=hukou,
        destination=residence,
    )
    return {"event_id": str(event.id), "action": body["action"]}
