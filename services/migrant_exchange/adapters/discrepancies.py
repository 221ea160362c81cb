"""SQL of discrepancy cases: opened by reconciliation or by an unfilled sequence gap."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg


async def open_case(conn: asyncpg.Connection, case: dict[str, Any]) -> uuid.UUID | None:
    """Open a case unless the same difference is already open; returns the new case's id."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """INSERT INTO discrepancies (id, kind, division_a, division_b, subject, record_kind, record_key,
                                      missing_at, duplicated_at, fields, detail, reconciliation_id)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
           ON CONFLICT (kind, division_a, division_b, subject, record_key) WHERE state = 'open' DO NOTHING
           RETURNING id""",
        uuid.uuid4(),
        case["kind"],
        case["division_a"],
        case["division_b"],
        case["subject"],
        case["record_kind"],
        case["record_key"],
        case.get("missing_at"),
        case.get("duplicated_at"),
        list(case.get("fields") or []),
        case.get("detail") or {},
        case.get("reconciliation_id"),
    )


async def clear_not_found(
    conn: asyncpg.Connection, a: str, b: str, found: list[tuple[str, str, str]], run_id: uuid.UUID
) -> int:
    """Resolve the open reconciliation cases of a pair that this run no longer finds."""
    result = await conn.execute(
        """UPDATE discrepancies d SET state = 'resolved', resolved_at = now(),
                  resolution = jsonb_build_object('action', 'cleared', 'reconciliation_id', $4::text)
           WHERE d.state = 'open' AND d.division_a = $1 AND d.division_b = $2
             AND d.kind IN ('missing', 'field_conflict', 'duplicate')
             AND (d.kind, d.subject, d.record_key) NOT IN (
                 SELECT * FROM unnest($3::text[], $5::text[], $6::text[]))""",
        a,
        b,
        [f[0] for f in found],
        str(run_id),
        [f[1] for f in found],
        [f[2] for f in found],
    )
    return int(result.split()[-1])


async def fill_gaps(conn: asyncpg.Connection, arrivals: list[tuple[str, str, str, int]]) -> int:
    """Count events that arrived after their gap was given up (subject, source, division, sequence)
    against the open ``sequence_gap`` cases they fall in: a case shows the numbers that arrived
    and how many are still missing, and resolves itself as filled when none is. A number already
    counted writes nothing. Each arrival is one probe of ``discrepancies_open_once`` (kind,
    divisions, subject), so a replay of older events costs little. Returns the cases resolved."""
    if not arrivals:
        return 0
    rows = await conn.fetch(
        """WITH found AS (
               SELECT d.id, d.detail, array_agg(DISTINCT u.sequence) AS numbers
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(subject, source, division, sequence)
               JOIN discrepancies d ON d.kind = 'sequence_gap' AND d.state = 'open'
                    AND d.division_a = u.division AND d.division_b = u.division AND d.subject = u.subject
                    AND d.detail->>'source' = u.source
                    AND u.sequence BETWEEN (d.detail->>'missing_from')::bigint AND (d.detail->>'missing_to')::bigint
                    AND NOT coalesce(d.detail->'arrived', '[]') @> to_jsonb(u.sequence)
               GROUP BY d.id, d.detail),
           counted AS MATERIALIZED (  -- the merged numbers, computed once for every use below
               SELECT id, (detail->>'missing_to')::bigint - (detail->>'missing_from')::bigint + 1 AS missing,
                      ARRAY(SELECT DISTINCT n FROM unnest(numbers || ARRAY(
                                SELECT jsonb_array_elements_text(coalesce(detail->'arrived', '[]'))::bigint)) AS n
                            ORDER BY n) AS arrived
               FROM found)
           UPDATE discrepancies d
           SET detail = d.detail || jsonb_build_object('arrived', c.arrived,
                                                       'still_missing', c.missing - cardinality(c.arrived)),
               state = CASE WHEN cardinality(c.arrived) = c.missing THEN 'resolved' ELSE d.state END,
               resolved_at = CASE WHEN cardinality(c.arrived) = c.missing THEN now() ELSE d.resolved_at END,
               resolution = CASE WHEN cardinality(c.arrived) = c.missing
                   THEN jsonb_build_object('action', 'filled', 'note', 'every missing event arrived late and was applied')
                   ELSE d.resolution END
           FROM counted c
           WHERE d.id = c.id AND d.state = 'open'
           RETURNING d.state""",
        [a[0] for a in arrivals],
        [a[1] for a in arrivals],
        [a[2] for a in arrivals],
        [a[3] for a in arrivals],
    )
    return sum(r["state"] == "resolved" for r in rows)


async def list_cases(
    conn: asyncpg.Connection,
    state: str | None,
    kind: str | None,
    jurisdiction: str | None,
    reconciliation_id: uuid.UUID | None,
    limit: int,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT * FROM discrepancies
           WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2)
             AND ($3::text IS NULL OR division_a = $3 OR division_b = $3)
             AND ($4::uuid IS NULL OR reconciliation_id = $4)
           ORDER BY created_at, id LIMIT $5""",
        state,
        kind,
        jurisdiction,
        reconciliation_id,
        limit,
    )
    return rows


async def get_case(conn: asyncpg.Connection, case_id: uuid.UUID, lock: bool = False) -> asyncpg.Record | None:
    sql = "SELECT * FROM discrepancies WHERE id = $1" + (" FOR UPDATE" if lock else "")
    return await conn.fetchrow(sql, case_id)


async def resolve_case(conn: asyncpg.Connection, case_id: uuid.UUID, resolution: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE discrepancies SET state = 'resolved', resolved_at = now(), resolution = $2 WHERE id = $1",
        case_id,
        resolution,
    )


# A repair's progress. The case stays open until the counterpart's feedback says 'applied'.
# A request whose registry call never came back (the exchange stopped halfway) may be made again.
_REQUEST_SECONDS = 120


async def request_repair(
    conn: asyncpg.Connection, case_id: uuid.UUID, repair_id: uuid.UUID, resolution: dict[str, Any]
) -> None:
    await conn.execute(
        """UPDATE discrepancies SET repair_id = $2, repair_state = 'requested', repair_notification_id = NULL,
                  repair_requested_at = now(), reason = NULL, resolution = $3 WHERE id = $1""",
        case_id,
        repair_id,
        resolution,
    )


async def repair_sent(conn: asyncpg.Connection, repair_id: uuid.UUID, event_id: str) -> None:
    """The sender's registry wrote the repair (its feedback may even be here already)."""
    await conn.execute(
        """UPDATE discrepancies SET resolution = resolution || jsonb_build_object('correction_event_id', $2::text),
                  repair_state = CASE WHEN repair_state = 'requested' THEN 'awaiting_feedback' ELSE repair_state END
           WHERE repair_id = $1""",
        repair_id,
        event_id,
    )


async def repair_failed(conn: asyncpg.Connection, repair_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        "UPDATE discrepancies SET repair_state = 'failed', reason = $2 WHERE repair_id = $1 AND state = 'open'",
        repair_id,
        reason[:500],
    )


async def case_of_repair(conn: asyncpg.Connection, repair_id: object) -> asyncpg.Record | None:
    """The open case a correction event repairs, if it is a repair (locked: its feedback may follow)."""
    try:
        rid = uuid.UUID(str(repair_id))
    except ValueError:
        return None
    return await conn.fetchrow(
        "SELECT * FROM discrepancies WHERE repair_id = $1 AND state = 'open' FOR UPDATE", rid
    )


async def repair_routed(
    conn: asyncpg.Connection, repair_id: uuid.UUID, notification_id: uuid.UUID | None, reason: str | None
) -> None:
    """Link the repair to the notification addressed to the lacking side, or say why there is none."""
    if notification_id is None:
        await conn.execute(
            """UPDATE discrepancies SET repair_state = 'not_routed', reason = $2
               WHERE repair_id = $1 AND state = 'open' AND repair_state IN ('requested', 'awaiting_feedback')""",
            repair_id,
            reason,
        )
        return
    await conn.execute(
        """UPDATE discrepancies SET repair_notification_id = $2,
                  repair_state = CASE WHEN repair_state = 'requested' THEN 'awaiting_feedback' ELSE repair_state END
           WHERE repair_id = $1 AND state = 'open'""",
        repair_id,
        notification_id,
    )


async def repair_answered(
    conn: asyncpg.Connection, notification_id: uuid.UUID, outcome: str, reason: str | None
) -> bool:
    """The lacking side's feedback: 'applied' resolves the case; anything else keeps it open with why."""
    return notification_id in await repairs_answered(conn, [(notification_id, outcome, reason)])


async def repairs_overdue(conn: asyncpg.Connection, notification_ids: list[uuid.UUID]) -> None:
    await conn.execute(
        """UPDATE discrepancies SET repair_state = 'overdue',
                  reason = 'the counterpart did not answer the repair before its deadline'
           WHERE repair_notification_id = ANY($1::uuid[]) AND state = 'open'
             AND repair_state = 'awaiting_feedback'""",
        notification_ids,
    )


def repair_in_flight(case: asyncpg.Record, now: dt.datetime) -> bool:
    if case["repair_state"] == "awaiting_feedback":
        return True  # until the feedback, or the notification's deadline ('overdue')
    asked = case["repair_requested_at"]
    return bool(
        case["repair_state"] == "requested" and asked and (now - asked).total_seconds() < _REQUEST_SECONDS
    )


async def repairs_answered(
    conn: asyncpg.Connection, answers: list[tuple[uuid.UUID, str, str | None]]
) -> set[uuid.UUID]:
    """``repair_answered`` for many (notification id, outcome, reason) at once; the notification
    ids of the cases answered now."""
    if not answers:
        return set()
    rows = await conn.fetch(
        """UPDATE discrepancies d SET repair_state = u.outcome,
                  reason = CASE WHEN u.outcome = 'applied' THEN NULL ELSE u.reason END,
                  state = CASE WHEN u.outcome = 'applied' THEN 'resolved' ELSE d.state END,
                  resolved_at = CASE WHEN u.outcome = 'applied' THEN now() ELSE d.resolved_at END
           FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(notification_id, outcome, reason)
           WHERE d.repair_notification_id = u.notification_id AND d.state = 'open'
           RETURNING d.repair_notification_id""",
        [a[0] for a in answers],
        [a[1] for a in answers],
        [a[2] for a in answers],
    )
    return {r["repair_notification_id"] for r in rows}
