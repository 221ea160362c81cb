"""Indicators per jurisdiction and period, the flow matrix, and the early warnings (预警).

Definitions (what the numbers mean, as an operator would report them):

* in-migrants / out-migrants: people in the exchange's roster living in / registered in the
  jurisdiction while registered / living elsewhere (a stock, as of now).
* certificate issuance rate (办证率): out-migrants of the jurisdiction holding a certificate it
  issued that is valid (issued, not revoked, not expired) at the end of the period / its out-migrants.
* verification rate (验证率), per destination D and period P: of the certificates D's
  in-migrants hold (issued by their place of household registration; in force at some time in
  P: issued before P ends, not revoked before it starts, valid until at least its first day),
  the share that a client of D (a kiosk or a department at D) verified at least once in P. A
  verification is one that named the certificate (by number, by QR token, or reported by an
  offline kiosk), whatever its verdict (a revoked certificate checked at the counter was
  verified); a check of an unknown number or a forged token names no certificate and counts
  nowhere. The exchange learns checks from verification's ``disclosure.recorded.v1`` events
  (``certificate.verified``: number, issuer, the client's jurisdiction, verdict, time), the
  certificates from ``certificate.lifecycle.v1``, the holders' places from its roster (now).
  ``verifications`` is the volume: every verification by D's clients in P.
* timely-feedback rate (及时反馈率): notifications addressed to the jurisdiction, created in the
  period and decided (answered, or past the deadline), answered by the deadline / decided ones.
* median / p99 feedback time: from the source event to the applied feedback, in seconds.
* open discrepancies, reconciliation accuracy: from reconciliation's case table, when the build has
  one; accuracy = 1 - (subjects with an open case / migrants the jurisdiction shares), and only for
  jurisdictions with a finished reconciliation run: never reconciled is "not available", not 100 %.

Rates are None when their denominator is zero: "no data" is not 0 % and not 100 %.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from services.migrant_exchange.adapters import dead_letters as census
from services.migrant_exchange.adapters import stats
from shared.sensitivity import neutral_text, neutral_topic, neutral_type

NOTES = {
    "verification_rate": "certificates of in-migrants in force in the period verified at least once "
    "there / those certificates",
    "migrants": "stock as of now from the exchange roster; not period-bound",
    "reconciliation_accuracy": "1 - subjects with an open discrepancy / shared migrants; n/a until reconciled",
}
RATES = ("certificate_issuance_rate", "verification_rate", "timely_feedback_rate", "reconciliation_accuracy")
TRENDS = ("certificate_issuance_rate", "verification_rate", "timely_feedback_rate")


@dataclass(frozen=True)
class Period:
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def ending(cls, end: dt.datetime | None, length: dt.timedelta) -> Period:
        end = end or dt.datetime.now(dt.UTC)
        return cls(end - length, end)

    def previous(self) -> Period:
        """The period of the same length just before: the basis of each trend."""
        return Period(self.start - (self.end - self.start), self.start)


def _ratio(num: int | None, den: int | None) -> float | None:
    return round(num / den, 4) if den and num is not None else None


def _by_division(rows: list[asyncpg.Record]) -> dict[str, asyncpg.Record]:
    return {r["division"]: r for r in rows}


async def period_values(conn: asyncpg.Connection, period: Period) -> dict[str, dict[str, Any]]:
    """The period-bound numbers of every jurisdiction that had any."""
    feedback = _by_division(await stats.feedback_stats(conn, period.start, period.end))
    holders = _by_division(await stats.certificate_holders(conn, period.end))
    issued = _by_division(await stats.certificates_issued(conn, period.start, period.end))
    checked = _by_division(await stats.verification_coverage(conn, period.start, period.end))
    out: dict[str, dict[str, Any]] = {}
    for division in set(feedback) | set(holders) | set(issued) | set(checked):
        f, h, i, v = (
            feedback.get(division),
            holders.get(division),
            issued.get(division),
            checked.get(division),
        )
        out[division] = {
            "certificates_issued": int(i["issued"]) if i else 0,
            "certificate_issuance_rate": _ratio(h["holders"], h["migrants"]) if h else None,
            "certificates_held": int(v["held"]) if v else 0,
            "certificates_verified": int(v["verified"]) if v else 0,
            "verifications": int(v["verifications"]) if v else 0,
            "verification_rate": _ratio(v["verified"], v["held"]) if v else None,
            "notifications_received": int(f["notifications"]) if f else 0,
            "notifications_due": int(f["due"]) if f else 0,
            "timely_feedback_rate": _ratio(f["timely"], f["due"]) if f else None,
            "feedback_median_seconds": _round(f["median_s"]) if f else None,
            "feedback_p99_seconds": _round(f["p99_s"]) if f else None,
        }
    return out


def _round(value: float | None) -> float | None:
    return round(float(value), 3) if value is not None else None


async def compute_indicators(
    conn: asyncpg.Connection,
    period: Period,
    jurisdiction: str | None = None,
    previous: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every indicator per jurisdiction for the period, with the change from the previous period.

    ``previous`` may be passed in (``period_values`` of ``period.previous()``, computed a little
    earlier): a rolling dashboard need not recompute the basis of its trends every few seconds.
    """
    current = await period_values(conn, period)
    if previous is None:
        previous = await period_values(conn, period.previous())
    stock = _by_division(await stats.migrant_stock(conn))
    shape = await stats.discrepancy_shape(conn)
    cases = _by_division(await stats.open_discrepancies(conn, shape)) if shape else {}
    shared = _by_division(await stats.shared_subjects(conn)) if shape else {}
    reconciled = await stats.reconciled_divisions(conn) if shape else set()
    divisions = sorted(set(current) | set(stock) | set(cases))
    if jurisdiction is not None:
        divisions = [jurisdiction]
    result = []
    for division in divisions:
        now = current.get(division) or _empty()
        before = previous.get(division) or _empty()
        s = stock.get(division)
        c = cases.get(division)
        sh = shared.get(division)
        row: dict[str, Any] = {
            "jurisdiction": division,
            "in_migrants": int(s["in_migrants"]) if s else 0,
            "out_migrants": int(s["out_migrants"]) if s else 0,
            **now,
            "open_discrepancies": (int(c["cases"]) if c else 0) if shape else None,
            "reconciliation_accuracy": (
                _ratio(int(sh["subjects"]) - (int(c["subjects"]) if c else 0), int(sh["subjects"]))
                if shape and sh and division in reconciled
                else None
            ),
        }
        row["previous"] = {k: before.get(k) for k in TRENDS}
        row["trend"] = {
            k: (
                round(row[k] - row["previous"][k], 4)
                if row[k] is not None and row["previous"][k] is not None
                else None
            )
            for k in row["previous"]
        }
        result.append(row)
    return {
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "discrepancies_available": shape is not None,
        "jurisdictions": result,
        "notes": NOTES,
    }


def _empty() -> dict[str, Any]:
    return {
        "certificates_issued": 0,
        "certificate_issuance_rate": None,
        "certificates_held": 0,
        "certificates_verified": 0,
        "verifications": 0,
        "verification_rate": None,
        "notifications_received": 0,
        "notifications_due": 0,
        "timely_feedback_rate": None,
        "feedback_median_seconds": None,
        "feedback_p99_seconds": None,
    }


async def compute_flows(conn: asyncpg.Connection, dense: bool = False) -> dict[str, Any]:
    """The origin × destination matrix: sparse cells, or dense rows in the order of ``divisions``."""
    rows = await stats.flows(conn)
    divisions = sorted({r["origin"] for r in rows} | {r["destination"] for r in rows})
    cells = sorted(
        ({"origin": r["origin"], "destination": r["destination"], "count": int(r["n"])} for r in rows),
        key=lambda c: (-c["count"], c["origin"], c["destination"]),
    )
    out: dict[str, Any] = {"divisions": divisions, "flows": cells, "total": sum(c["count"] for c in cells)}
    if dense:
        index = {d: i for i, d in enumerate(divisions)}
        matrix = [[0] * len(divisions) for _ in divisions]
        for c in cells:
            matrix[index[c["origin"]]][index[c["destination"]]] = c["count"]
        out["matrix"] = matrix
    return out


async def operations_picture(conn: asyncpg.Connection, limit: int = 5) -> dict[str, Any]:
    """Notifications pending and overdue, dead letters (the exchange's own open ones and every
    service's by service, topic and reason), open discrepancies: counts and the oldest few."""
    n = await stats.notification_summary(conn)
    shape = await stats.discrepancy_shape(conn)
    counts = await census.counts(conn)
    return {
        "notifications": {
            "pending": int(n["pending"]),
            "overdue": int(n["overdue"]),
            "oldest_open_seconds": round(float(n["oldest_open_s"]), 1),
            "oldest_overdue_seconds": round(float(n["oldest_overdue_s"]), 1),
        },
        "dead_letters": neutral_dead_letters(await stats.dead_letter_summary(conn, limit)),
        # Every service's dead letters, from the <topic>.dlq topics (``domain.dead_letters``).
        "all_dead_letters": {"total": sum(int(c["count"]) for c in counts), "counts": counts},
        "discrepancies": await stats.discrepancy_summary(conn, shape, limit) if shape else None,
    }


def neutral_dead_letter(row: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as an operator sees it: one message is one person's, so its topic and reason
    name no sensitive type (the message itself is never shown)."""
    return {**row, "topic": neutral_topic(row["topic"]), "reason": neutral_text(row["reason"] or "")}


def neutral_lag(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lag rows with topic names as the metric labels carry them (a pregnancy topic's neutral)."""
    return [{**r, "topic": neutral_topic(r["topic"])} for r in rows]


def neutral_dead_letters(summary: dict[str, Any]) -> dict[str, Any]:
    return {**summary, "latest": [neutral_dead_letter(r) for r in summary["latest"]]}


def shown_type(event_type: str) -> str:
    """The label the dashboard may show for an event type: a pregnancy's rate is counted under the
    neutral category (DESIGN section 8: pregnancy data never reaches the dashboard by name), the
    same name every service's metric labels use."""
    return neutral_type(event_type)


# --- early warning (预警) -----------------------------------------------------------------------


class Thresholds(BaseModel):
    """Where the early warnings start (the dashboard's settings are these, from ``DASHBOARD_*``)."""

    model_config = ConfigDict(frozen=True)

    overdue_notifications: int = 1
    oldest_open_seconds: float = 300.0
    consumer_lag: int = 1000
    outbox_age_seconds: float = 30.0
    dead_letters: int = 1
    timely_feedback_rate: float = 0.95
    reconciliation_accuracy: float = 0.99


def alerts(snapshot: dict[str, Any], t: Thresholds) -> list[dict[str, str]]:
    """Warnings for every threshold crossed, worst first; each says what and how much in words."""
    found: list[dict[str, str]] = []

    def add(level: str, code: str, text: str) -> None:
        found.append({"level": level, "code": code, "text": text})

    ops = snapshot.get("operations") or {}
    n = ops.get("notifications") or {}
    if n.get("overdue", 0) >= t.overdue_notifications:
        add(
            "alert",
            "overdue",
            f"{n['overdue']} notifications overdue, oldest {_age(n['oldest_overdue_seconds'])}",
        )
    if n.get("oldest_open_seconds", 0) >= t.oldest_open_seconds:
        add("warning", "slow-feedback", f"oldest open notification waits {_age(n['oldest_open_seconds'])}")
    for lag in snapshot.get("lag") or []:
        state = lag.get("state", "ok")
        if state == "absent":
            add("alert", "consumer-absent", f"consumer group {lag['group']} is gone from the broker")
        elif state == "stalled":
            add(
                "alert",
                "consumer-stalled",
                f"consumer {lag['group']} stalled, {lag['lag']} behind on {lag['topic']}",
            )
        elif lag["lag"] >= t.consumer_lag:
            add("warning", "lag", f"consumer {lag['group']} is {lag['lag']} behind on {lag['topic']}")
    outbox = snapshot.get("outbox") or {}
    if outbox.get("oldest_age_seconds", 0) >= t.outbox_age_seconds:
        add("alert", "outbox", f"outbox not draining: oldest event {_age(outbox['oldest_age_seconds'])} old")
    dead = (ops.get("dead_letters") or {}).get("open", 0)
    if dead >= t.dead_letters:
        add("warning", "dlq", f"{dead} dead letters waiting for replay")
    for row in (snapshot.get("indicators") or {}).get("jurisdictions", []):
        rate = row.get("timely_feedback_rate")
        if rate is not None and rate < t.timely_feedback_rate:
            add("warning", "feedback-rate", f"{row['jurisdiction']}: timely feedback {rate:.0%}")
        accuracy = row.get("reconciliation_accuracy")
        if accuracy is not None and accuracy < t.reconciliation_accuracy:
            add("warning", "accuracy", f"{row['jurisdiction']}: reconciliation accuracy {accuracy:.1%}")
    return sorted(found, key=lambda a: a["level"] != "alert")


def _age(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
