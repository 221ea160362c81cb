"""Who sees what of the exchange's notifications and roster (DESIGN.md sections 8 and 10).

A jurisdiction sees its own traffic in full, and the addressee also the payload it must apply.
An operator sees every jurisdiction's traffic as operations, not people: no subject key, the
neutral category for a sensitive event type (``shared.sensitivity``), the names of the fields
that disagree without their values, reasons without identity numbers or sensitive names, never a
payload. Any other client without a jurisdiction is refused rather than given everything.
Discrepancy cases, read only by operators, show what differs and where, never whose or which record.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.migrant_exchange.service_layer import disclosures
from shared import audit
from shared.auth import Client
from shared.disclosures import purpose_of
from shared.errors import Forbidden
from shared.observability import redact
from shared.sensitivity import NEUTRAL_CATEGORY, is_sensitive, neutral_text


def require_jurisdiction(client: Client) -> None:
    """Only operators read across jurisdictions; anyone else needs a home jurisdiction."""
    if client.kind != "operator" and client.jurisdiction is None:
        raise Forbidden(
            "this client has no jurisdiction, and only operators read across jurisdictions",
            field="client",
            rule="client-jurisdiction",
        )


def notification(client: Client, row: asyncpg.Record) -> dict[str, Any]:
    """One notification as this client may see it."""
    if client.kind == "operator":
        return _operations(row)
    mine = client.kind == "jurisdiction" and row["target_division"] == client.jurisdiction
    return {**dict(row), "notification_id": row["id"], "payload": row["payload"] if mine else None}


async def notifications_read(
    conn: asyncpg.Connection, client: Client, rows: list[asyncpg.Record]
) -> list[dict[str, Any]]:
    """The notifications as this client may see them; each payload handed over is audited (a
    REST pick-up is a disclosure of the person's data to the addressee), under the purpose the
    notification serves (maternal care for a pregnancy or a correction of one, registration
    otherwise), the one its disclosure names. The first pick-up of a payload is also told to the
    person's registries, under one ``disclosure_id`` with this entry."""
    out = [notification(client, r) for r in rows]
    told = await disclosures.record_pickups(conn, client, out)
    picked = [
        audit.AuditEntry(
            client.client_id,
            "notification.fetched",
            purpose_of(n["event_type"], n["payload"]),
            n["subject"],
            {
                "notification_id": str(n["notification_id"]),
                "jurisdiction": n["target_division"],
                "source": n["source_division"],
                "event_type": n["event_type"],
            }
            | ({"disclosure_id": str(told[n["notification_id"]])} if n["notification_id"] in told else {}),
        )
        for n in out
        if n["payload"] is not None
    ]
    await audit.append(conn, picked)
    return out


def _operations(row: asyncpg.Record) -> dict[str, Any]:
    conflicts = row["conflicts"]
    # A pregnancy by its type; a correction of one as marked when it was routed (its payload,
    # which says so, is purged once answered): either reads as the neutral category.
    restricted = is_sensitive(row["event_type"]) or bool(row["restricted"])
    return {
        **dict(row),
        "notification_id": row["id"],
        "subject": None,
        "event_type": NEUTRAL_CATEGORY if restricted else row["event_type"],
        # A conflict's field names: of a restricted notification (answered in the old form, or
        # over REST), neutral too, as its withheld fields are.
        "conflicts": None
        if conflicts is None
        else [{"field": NEUTRAL_CATEGORY if restricted else neutral_text(c["field"])} for c in conflicts],
        "reason": None if row["reason"] is None else redact(neutral_text(row["reason"])),
        "payload": None,
        # What an agreement withholds names the event's kind (expected_delivery): neutral for these.
        "withheld_fields": [NEUTRAL_CATEGORY if restricted else f for f in row["withheld_fields"] or []],
    }


def migrant(client: Client, row: asyncpg.Record) -> dict[str, Any]:
    """One roster row: operators see the movement without the subject key."""
    return {**dict(row), "subject": None} if client.kind == "operator" else dict(row)


# What a case's ``detail`` may show: divisions (where the record was registered, where it is held
# twice), a sequence gap's source and numbers (missing, arrived late since, still missing). Any
# other entry (``duplicate_of``, ``key_at_<division>``: certificate or medical-certificate
# numbers) keeps its name with a null value.
_OPERATIONS_DETAIL = frozenset(
    {"owner", "owner_at", "duplicated_at", "source", "missing_from", "missing_to", "arrived", "still_missing"}
)


def discrepancy(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A discrepancy case as operators see it (``ops:read`` and ``ops:resolve`` are operators' scopes
    only, ``shared.clients_file``): what differs and where, never whose or which record. No subject
    key, no record key, ``detail`` values only where they are divisions or sequence numbers; a
    pregnancy record and its field names read as the neutral category, a reason is redacted. A
    repair needs none of it: the exchange reads the subject and keys from the case by its id."""
    case = dict(row)
    sensitive = case.get("record_kind") == "pregnancy"
    reason = case.get("reason")
    return {
        **case,
        "subject": None,
        "record_key": None,
        "record_kind": NEUTRAL_CATEGORY if sensitive else case.get("record_kind"),
        "fields": [NEUTRAL_CATEGORY if sensitive else f for f in case.get("fields") or []],
        "detail": {k: v if k in _OPERATIONS_DETAIL else None for k, v in (case.get("detail") or {}).items()},
        "reason": None if reason is None else redact(neutral_text(reason)),
    }
