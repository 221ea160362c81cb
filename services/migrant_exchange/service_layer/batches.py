"""The routing consumer's whole batch at once: what ``ordering`` and ``HANDLERS`` do event by event,
in a handful of statements for the batch rather than about ten for each event.

A fetch of a busy consumer holds hundreds of events. Taken one at a time, each costs its
ordering step, the roster row read and written, the agreement read, the notification written
and its outbox rows numbered and written. Here the batch's ordering rows are locked and read
in one statement, its roster rows in one, the agreements once per pair of jurisdictions, and the
notifications, the roster and the progress written with one statement each; the events queued
(notifications, disclosures) are written by the consumer's batch with one COPY.

The outcome is the same as applying the events in turn (``tests/integration/test_exchange_batches.py``
holds the two to each other): the batch is folded in memory in the order it arrived. What is
rare takes the event-by-event way for the whole batch (``eligible``): an event that must wait for
its predecessor or releases waiting ones, pregnancies (a closure reaches the pregnancy's holders
alone, and forgets them), and corrections (they reach the corrected record's holders) with the
reconciliation repairs among them.

The authority rules that read the exchange's records are checked in the batch's order as well: a
record's making (``_check_makers``) and a pregnancy's registry, against the roster as of that
event (her arrival earlier in the batch makes the producer her residence). The fold keeps the
second although ``plain`` sends pregnancies event by event today, so that admitting them to the
fold cannot drop it. A refusal refuses the batch, which the consumer then takes event by event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg

from services.migrant_exchange.adapters import delivery
from services.migrant_exchange.adapters import discrepancies as cases
from services.migrant_exchange.adapters import repository as repo
from services.migrant_exchange.domain import routing
from services.migrant_exchange.domain.routing import Whereabouts
from services.migrant_exchange.service_layer import disclosures, handlers, ordering
from services.migrant_exchange.settings import ExchangeSettings
from shared.events.envelope import Envelope
from shared.events.signature import NOT_AUTHORIZED, Rejected
from shared.identity import subject_key

FEEDBACK = frozenset({"exchange.feedback.v1", "exchange.feedback_batch.v1"})
Pair = tuple[str, str]  # (subject, source): the ordering's unit


def plain(event: Envelope[Any], routed: frozenset[str]) -> bool:
    """Whether the batch way takes this event's type: feedback, and routed events but pregnancies'
    and those whose routing reads the holders of a record (a record's end, a correction,
    reconciliation repairs among them)."""
    if event.type in FEEDBACK:
        return True
    return (
        event.type in routed
        and not event.type.startswith("pregnancy.")
        and event.type not in routing.NAMES_HELD
    )


async def in_line(
    conn: asyncpg.Connection, events: list[Envelope[Any]]
) -> tuple[dict[Pair, int], list[Envelope[Any]]] | None:
    """Lock the batch's ordering rows and check that every event applies at once (next in line with
    nothing waiting, or a late arrival already passed); the last sequence each pair reaches and the
    late arrivals (for ``ordering.arrived_late``), or None when one would wait or release waiting
    ones (the batch then goes event by event)."""
    ordered = [e for e in events if ordering.sequenced(e)]
    if not ordered:
        return {}, []
    state = await delivery.lock_progress_of(conn, [(e.subject, e.source) for e in ordered])
    reached: dict[Pair, int] = {}
    late: list[Envelope[Any]] = []
    for e in ordered:
        last, waiting = state[(e.subject, e.source)]
        if e.sequence == last + 1 and waiting == 0:
            state[(e.subject, e.source)] = (e.sequence, 0)
            reached[(e.subject, e.source)] = e.sequence
        elif e.sequence > last:
            return None
        else:
            late.append(e)
    return reached, late


async def route(conn: asyncpg.Connection, settings: ExchangeSettings, events: list[Envelope[Any]]) -> None:
    """``handlers.route_vital_event`` for each event in turn, folded: the roster in memory, the
    notifications, the roster rows and the disclosures written once each."""
    events = [e for e in events if e.producer is not None]
    if not events:
        return
    secret = settings.subject_key_secret.get_secret_value().encode()
    datas = [e.data.model_dump(mode="json") for e in events]
    others = [
        [k for k in (subject_key(n, secret) for n in routing.related_people(e.type, d)) if k != e.subject]
        for e, d in zip(events, datas, strict=True)
    ]
    await _check_makers(conn, events, datas)
    subjects = sorted({e.subject for e in events})
    roster = await repo.whereabouts_locked(conn, subjects)
    unlocked = sorted({k for ks in others for k in ks} - set(subjects))
    known = {**(await repo.whereabouts_by_subject(conn, unlocked) if unlocked else {}), **roster}
    saved: dict[str, tuple[Whereabouts, int, Any]] = {}
    agreements = _Agreements(conn)
    notes: list[tuple[Envelope[Any], dict[str, Any], Whereabouts, tuple[str, str] | None]] = []
    holders: set[tuple[str, str, str]] = set()
    for e, data, related_keys in zip(events, datas, others, strict=True):
        before = known.get(e.subject, Whereabouts(None, None))
        # The roster as of this event in the batch's order: her arrival earlier in the batch counts.
        handlers.check_her_registry(str(e.producer), e.type, before)
        after = routing.after_event(before, e.type, data, Whereabouts(e.origin, e.destination), e.time)
        known[e.subject] = after
        _, moves, last = saved.get(e.subject, (after, 0, e.time))
        saved[e.subject] = (after, moves + e.type.startswith("migration."), max(last, e.time))
        related = tuple(known[k] for k in related_keys if k in known)
        held = routing.held_record(e.type, data)
        due = len(notes)
        for target in sorted(routing.counterparts(str(e.producer), e.type, data, after, related)):
            row = await agreements.between(str(e.producer), target)
            n = handlers.notification_under(row, settings, e, data, target)
            if n is not None:
                notes.append((e, n, after, held))
        if held is not None and len(notes) == due:  # sent to nobody: held by its producer alone
            holders.add((*held, str(e.producer)))
    await repo.save_roster(conn, [(s, w, moves, last) for s, (w, moves, last) in saved.items()])
    inserted = await repo.insert_notifications(conn, [n for _, n, _, _ in notes])
    told = []
    for e, n, after, held in notes:
        if n["notification_id"] in inserted:
            await handlers.publish(conn, settings, n, e.traceparent)
            told.append(disclosures.notified(e, n, after))
            if held is not None:  # as ``handlers.route_vital_event``: its producer and whoever it reached
                holders |= {(*held, n["target_division"]), (*held, str(e.producer))}
    await disclosures.publish(conn, told)
    await repo.add_holders(conn, holders)


async def _check_makers(
    conn: asyncpg.Connection, events: list[Envelope[Any]], datas: list[dict[str, Any]]
) -> None:
    """``handlers.route_vital_event``'s rule on a record's making, for the batch in its order: an
    earlier event of the batch making the same record holds it from then on, as it would event by
    event. Its addressees are not known yet, so a second maker that was one of them is refused here
    too; the consumer then takes the batch event by event, which decides with them known."""
    made = [routing.made_record(e.type, d) for e, d in zip(events, datas, strict=True)]
    holding = await repo.holders_of_many(conn, [m for m in made if m is not None])
    for e, m in zip(events, made, strict=True):
        if m is None:
            continue
        held = holding.setdefault(m, set())
        if not handlers.made_by(str(e.producer), held):
            raise Rejected(NOT_AUTHORIZED, f"{e.type} under the key of a record {e.producer} does not hold")
        held.add(str(e.producer))


async def close(conn: asyncpg.Connection, events: Iterable[Envelope[Any]]) -> None:
    """``handlers.record_feedback`` for each answer in turn (a batch's in its order): the first answer to a notification
    closes it, and feedback from a division a notification was not addressed to is refused
    (raised: the consumer then takes the batch event by event and dead-letters that one)."""
    answers = [a for e in events for a in handlers.answers(e)]
    if not answers:
        return
    targets = await repo.notification_targets(conn, [a.notification_id for a in answers])
    first: dict[uuid.UUID, Any] = {}
    for a in answers:
        known = targets.get(a.notification_id)
        if known is not None and known[0] != a.from_division:
            raise Rejected(NOT_AUTHORIZED, "feedback from a division the notification was not addressed to")
        restricted = known is not None and handlers.restricted_row(known[1], known[2])
        first.setdefault(a.notification_id, a.withheld() if restricted else a)
    closed = await repo.close_notifications(
        conn,
        [
            (a.notification_id, a.from_division, a.outcome, [c.model_dump() for c in a.conflicts], a.reason)
            for a in first.values()
        ],
    )
    await cases.repairs_answered(
        conn, [(i, a.outcome, handlers.why(a)) for i, a in first.items() if i in closed]
    )


class _Agreements:
    """The agreement between two jurisdictions, read once per pair in a batch."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn
        self.read: dict[Pair, asyncpg.Record | None] = {}

    async def between(self, a: str, b: str) -> asyncpg.Record | None:
        if (a, b) not in self.read:
            self.read[(a, b)] = await repo.agreement(self.conn, a, b)
        return self.read[(a, b)]
