"""Reconciliation as a registry answers it: digests and drill-down (repairs: ``repairs.py``).

Nothing that leaves here names a person: subjects are pseudonymous keys, record values travel
only as keyed hashes (field by field on drill-down, so the exchange can say which field differs).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import asyncpg

from services.registry.adapters import reconciliation as repo
from services.registry.settings import RegistrySettings
from shared.errors import Forbidden, RuleViolation


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
    conn: asyncpg.Connection,
    settings: RegistrySettings,
    jurisdiction: str,
    counterpart: str,
    buckets: int,
    left_out: list[tuple[str, str]],
) -> dict[str, Any]:
    """Counts and order-independent digests per bucket of the records shared with the counterpart
    but those ``left_out`` (kind, exchange key: the exchange set them aside, and the counterpart
    leaves them out too), and the records this side holds twice."""
    check_pair(settings, jurisdiction, counterpart)
    rows = await repo.bucket_digests(conn, jurisdiction, counterpart, buckets, left_out)
    twice = await repo.duplicates(conn, jurisdiction, counterpart)
    return {
        "jurisdiction": jurisdiction,
        "counterpart": counterpart,
        "buckets": buckets,
        "records": sum(r["records"] for r in rows),
        "digests": [[r["bucket"], r["records"], str(r["digest"])] for r in rows],
        "duplicates": [[r["subject"], r["kind"], r["key"], r["first_key"], r["owner"]] for r in twice],
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
    """The records of the selected buckets: key, hash, identity, owner, a keyed hash per field and,
    but for a person (whose exchange key is her identity number), the record's exchange key: the
    exchange keeps who was sent a record by that key, and compares it only where it was sent."""
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
                "owner": r["owner"],
                "record_id": r["rid"] if r["kind"] != "person" else None,
                "fields": {
                    name: _keyed(secret, value)
                    for name, value in zip(repo.FIELDS[r["kind"]], r["vals"], strict=True)
                },
            }
            for r in rows
        ]
    }
