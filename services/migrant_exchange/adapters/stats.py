"""All SQL behind indicators, flows and the operations dashboard: aggregates only, never a person.

Every query groups by jurisdiction (or by origin and destination); none returns a subject key,
a name or an identity number. The discrepancy case table belongs to reconciliation and may not
exist (or may have another shape) in a given build: ``discrepancy_shape`` looks it up in the
catalogue and the queries adapt, or report it as absent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

# Columns a discrepancy case may use to name the jurisdictions involved, by preference.
_DIVISION_COLUMNS = (
    "division_a",
    "division_b",
    "origin_division",
    "destination_division",
    "source_division",
    "target_division",
    "hukou_division",
    "residence_division",
    "jurisdiction",
    "division",
)
_CLOSED_STATES = "('resolved', 'closed', 'dismissed', 'corrected')"


# --- certificate projection (certificate.lifecycle.v1) ----------------------------------------


async def record_certificate_issued(
    conn: asyncpg.Connection,
    number: str,
    issuer: str,
    subject: str,
    issued_at: dt.datetime,
    valid_until: dt.date,
) -> None:
    await conn.execute(
        """INSERT INTO certificate_stats (certificate_number, issuer, subject, issued_at, valid_until)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (certificate_number) DO UPDATE SET issued_at = EXCLUDED.issued_at,
               valid_until = EXCLUDED.valid_until, subject = EXCLUDED.subject""",
        number,
        issuer,
        subject,
        issued_at,
        valid_until,
    )


async def record_certificate_revoked(
    conn: asyncpg.Connection, number: str, issuer: str, subject: str, revoked_at: dt.datetime
) -> None:
    """A revocation may overtake its issuance (other partition, replay): keep it on a stub row."""
    await conn.execute(
        """INSERT INTO certificate_stats (certificate_number, issuer, subject, revoked_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (certificate_number) DO UPDATE SET revoked_at = EXCLUDED.revoked_at
           WHERE certificate_stats.issuer = EXCLUDED.issuer""",
        number,
        issuer,
        subject,
        revoked_at,
    )


# --- flows and migrant stock ---------------------------------------------------------------------


async def flows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Migrants by (household registration, residence): the origin × destination matrix, sparse."""
    return list(
        await conn.fetch(
            """SELECT hukou_division AS origin, residence_division AS destination, count(*)::bigint AS n
           FROM roster
           WHERE hukou_division IS DISTINCT FROM residence_division
             AND hukou_division IS NOT NULL AND residence_division IS NOT NULL
           GROUP BY 1, 2"""
        )
    )


# --- indicators ----------------------------------------------------------------------------------


async def feedback_stats(
    conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime
) -> list[asyncpg.Record]:
    """Per addressed jurisdiction, for notifications created in [start, end).

    ``due`` counts notifications whose outcome is decided: answered, or past the deadline.
    Feedback times run from the source event to the applied feedback.
    """
    return list(
        await conn.fetch(
            """SELECT target_division AS division,
                  count(*)::bigint AS notifications,
                  count(*) FILTER (WHERE feedback_at IS NOT NULL OR deadline < now())::bigint AS due,
                  count(*) FILTER (WHERE feedback_at IS NOT NULL AND feedback_at <= deadline)::bigint AS timely,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM feedback_at - event_time))
                      FILTER (WHERE state = 'applied') AS median_s,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM feedback_at - event_time))
                      FILTER (WHERE state = 'applied') AS p99_s
           FROM notifications WHERE created_at >= $1 AND created_at < $2
           GROUP BY 1""",
            start,
            end,
        )
    )


async def migrant_stock(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per jurisdiction: people living there registered elsewhere (in) and the reverse (out)."""
    return list(
        await conn.fetch(
            """SELECT division, sum(in_m)::bigint AS in_migrants, sum(out_m)::bigint AS out_migrants
           FROM (SELECT residence_division AS division, 1 AS in_m, 0 AS out_m FROM roster
                 WHERE hukou_division IS DISTINCT FROM residence_division AND hukou_division IS NOT NULL
                 UNION ALL
                 SELECT hukou_division, 0, 1 FROM roster
                 WHERE hukou_division IS DISTINCT FROM residence_division AND residence_division IS NOT NULL) m
           WHERE division IS NOT NULL
           GROUP BY 1"""
        )
    )


async def certificate_holders(conn: asyncpg.Connection, as_of: dt.datetime) -> list[asyncpg.Record]:
    """Per jurisdiction of registration: out-migrants, and those holding a certificate valid at ``as_of``
    issued by that jurisdiction (the issuance rate's numerator and denominator)."""
    return list(
        await conn.fetch(
            """SELECT r.hukou_division AS division, count(*)::bigint AS migrants,
                  count(*) FILTER (WHERE EXISTS (
                      SELECT 1 FROM certificate_stats c
                      WHERE c.subject = r.subject AND c.issuer = r.hukou_division
                        AND c.issued_at <= $1 AND (c.revoked_at IS NULL OR c.revoked_at > $1)
                        AND c.valid_until >= $1::date))::bigint AS holders
           FROM roster r
           WHERE r.hukou_division IS DISTINCT FROM r.residence_division
             AND r.hukou_division IS NOT NULL AND r.residence_division IS NOT NULL
           GROUP BY 1""",
            as_of,
        )
    )


async def certificates_issued(
    conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT issuer AS division, count(*)::bigint AS issued FROM certificate_stats
           WHERE issued_at >= $1 AND issued_at < $2 GROUP BY 1""",
            start,
            end,
        )
    )


async def verification_coverage(
    conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime
) -> list[asyncpg.Record]:
    """Per destination: certificates its in-migrants hold that were in force during [start, end),
    those of them a client of the destination verified in that period, and its verifications
    (the verification rate's numerator, denominator and volume; ``indicators`` defines it)."""
    return list(
        await conn.fetch(
            """WITH held AS (
                   SELECT r.residence_division AS division, c.certificate_number
                   FROM roster r JOIN certificate_stats c ON c.subject = r.subject AND c.issuer = r.hukou_division
                   WHERE r.hukou_division IS DISTINCT FROM r.residence_division
                     AND r.hukou_division IS NOT NULL AND r.residence_division IS NOT NULL
                     AND c.issued_at < $2 AND (c.revoked_at IS NULL OR c.revoked_at >= $1)
                     AND c.valid_until >= $1::date)
               SELECT h.division, count(*)::bigint AS held,
                      count(*) FILTER (WHERE EXISTS (
                          SELECT 1 FROM verification_stats v
                          WHERE v.certificate_number = h.certificate_number AND v.division = h.division
                            AND v.verified_at >= $1 AND v.verified_at < $2))::bigint AS verified,
                      (SELECT count(*) FROM verification_stats v
                       WHERE v.division = h.division AND v.verified_at >= $1 AND v.verified_at < $2)::bigint
                          AS verifications
               FROM held h GROUP BY 1""",
            start,
            end,
        )
    )


async def shared_subjects(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per jurisdiction, the migrants it shares with a counterpart (the subjects reconciliation compares)."""
    return list(
        await conn.fetch(
            """SELECT division, count(*)::bigint AS subjects
           FROM (SELECT hukou_division AS division FROM roster
                 WHERE hukou_division IS DISTINCT FROM residence_division AND residence_division IS NOT NULL
                 UNION ALL
                 SELECT residence_division FROM roster
                 WHERE hukou_division IS DISTINCT FROM residence_division AND hukou_division IS NOT NULL) s
           WHERE division IS NOT NULL GROUP BY 1"""
        )
    )


# --- discrepancies (owned by reconciliation; may be absent) ---------------------------------------


@dataclass(frozen=True)
class DiscrepancyShape:
    """How the discrepancy table of this build names what the queries need."""

    open_condition: str
    division_columns: tuple[str, ...]
    has_subject: bool
    has_created_at: bool
    id_column: str | None


async def discrepancy_shape(conn: asyncpg.Connection) -> DiscrepancyShape | None:
    """None when the build has no discrepancy table (reconciliation not deployed yet)."""
    columns = {
        r["column_name"]
        for r in await conn.fetch(
            """SELECT column_name FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'discrepancies'"""
        )
    }
    if not columns:
        return None
    if "resolved_at" in columns:
        open_condition = "resolved_at IS NULL"
    elif "state" in columns:
        open_condition = f"state NOT IN {_CLOSED_STATES}"
    elif "status" in columns:
        open_condition = f"status NOT IN {_CLOSED_STATES}"
    else:
        open_condition = "true"
    return DiscrepancyShape(
        open_condition=open_condition,
        division_columns=tuple(c for c in _DIVISION_COLUMNS if c in columns),
        has_subject="subject" in columns,
        has_created_at="created_at" in columns,
        id_column="id" if "id" in columns else None,
    )


async def open_discrepancies(conn: asyncpg.Connection, shape: DiscrepancyShape) -> list[asyncpg.Record]:
    """Per jurisdiction involved: open cases, and distinct subjects with an open case."""
    if not shape.division_columns:
        return []
    # Column names come from the whitelist above, never from input.
    divisions = ", ".join(shape.division_columns)
    subject = "count(DISTINCT subject)" if shape.has_subject else "count(*)"
    return list(
        await conn.fetch(
            f"""SELECT d AS division, count(*)::bigint AS cases, {subject}::bigint AS subjects
            FROM discrepancies, LATERAL (SELECT DISTINCT unnest(ARRAY[{divisions}]::text[]) AS d) x
            WHERE {shape.open_condition} AND d IS NOT NULL
            GROUP BY 1"""
        )
    )


async def discrepancy_summary(
    conn: asyncpg.Connection, shape: DiscrepancyShape, limit: int
) -> dict[str, Any]:
    """How many cases are open, and the oldest few (id and age only) for the dashboard's links."""
    total = await conn.fetchval(f"SELECT count(*) FROM discrepancies WHERE {shape.open_condition}")
    recent: list[dict[str, Any]] = []
    if shape.id_column and shape.has_created_at:
        rows = await conn.fetch(
            f"""SELECT id::text AS id, extract(epoch FROM now() - created_at)::float AS age_s
                FROM discrepancies WHERE {shape.open_condition} ORDER BY created_at LIMIT $1""",
            limit,
        )
        recent = [dict(r) for r in rows]
    return {"open": int(total or 0), "oldest": recent}


async def reconciled_divisions(conn: asyncpg.Connection) -> set[str]:
    """Jurisdictions that took part in a finished reconciliation run (none if the build has no runs)."""
    exists = await conn.fetchval("SELECT to_regclass('reconciliations') IS NOT NULL")
    if not exists:
        return set()
    rows = await conn.fetch(
        """SELECT DISTINCT unnest(ARRAY[division_a, division_b]) AS division FROM reconciliations
           WHERE state = 'finished'"""
    )
    return {r["division"] for r in rows}


# --- the operations picture ------------------------------------------------------------------------


# Read the pending notifications by a plain scan of an index of theirs (the range of
# ``notifications_state_created`` or of another index that holds them), as the planner would not
# always choose: with statistics taken while a backlog was open it picks a bitmap or a sequential
# scan. A bitmap scan visits, at every sample, the index entries of every notification closed
# since the last vacuum and never marks them dead (a plain index scan does, so the next sample
# skips them). In a 200,000-event drain, sampled each second, that cost grew to 40-160 ms a
# sample; the plain scan costs what the pending notifications are. The overdue ones are not read
# one by one: unless answered late they stay overdue for good, and their number grows without
# bound. It is kept as notifications enter and leave the state (migration 0029: a count and the
# changes the sweep has not folded into it yet, read in one snapshot, so it is what a count of
# the rows would say), and the oldest one is the first entry of ``notifications_state_created``.
_OPEN_BY_INDEX = "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"

NOTIFICATION_SUMMARY = """SELECT p.n AS pending,
           (coalesce((SELECT n FROM notifications_overdue_count), 0)
            + (SELECT coalesce(sum(delta), 0) FROM notifications_overdue_changes))::bigint AS overdue,
           coalesce(extract(epoch FROM now() - least(p.oldest, o.oldest)), 0)::float AS oldest_open_s,
           coalesce(extract(epoch FROM now() - o.oldest), 0)::float AS oldest_overdue_s
    FROM (SELECT count(*)::bigint, min(created_at) FROM notifications WHERE state = 'pending') AS p(n, oldest),
         (SELECT min(created_at) FROM notifications WHERE state = 'overdue') AS o(oldest)"""


async def notification_summary(conn: asyncpg.Connection) -> asyncpg.Record:
    """Open notifications by state and the age of the oldest open one (in a transaction of its
    own: the planner settings end with it)."""
    async with conn.transaction():
        await conn.execute(_OPEN_BY_INDEX)
        return await conn.fetchrow(NOTIFICATION_SUMMARY)


async def dead_letter_summary(conn: asyncpg.Connection, limit: int) -> dict[str, Any]:
    """Open dead letters, and the latest few: where they came from and why (reasons are redacted)."""
    total = await conn.fetchval("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL")
    rows = await conn.fetch(
        """SELECT id, consumer, topic, left(reason, 160) AS reason,
                  extract(epoch FROM now() - created_at)::float AS age_s
           FROM dead_letters WHERE replayed_at IS NULL ORDER BY id DESC LIMIT $1""",
        limit,
    )
    return {"open": int(total or 0), "latest": [dict(r) for r in rows]}


async def dead_letters(
    conn: asyncpg.Connection, limit: int, dead_letter_id: int | None = None
) -> list[dict[str, Any]]:
    """Dead letters for the operators: where, when and why; never the message or its key."""
    rows = await conn.fetch(
        """SELECT id, consumer, topic, partition, "offset", reason, created_at, replayed_at
           FROM dead_letters WHERE ($2::bigint IS NULL OR id = $2) ORDER BY id DESC LIMIT $1""",
        limit,
        dead_letter_id,
    )
    return [dict(r) for r in rows]
