"""What the exchange keeps only for a while (``shared.retention``): notifications' payloads
(answered, or never answered), events parked too long, and the census of every service's dead
letters."""

from __future__ import annotations

from services.migrant_exchange.settings import ExchangeSettings
from shared.retention import Purge

DAY = 86400.0

# A payload answered (conflict or rejected: an applied one was purged when it was answered), the
# values a conflict answer names beside each differing field (``ours``, ``theirs``: the person's
# data too), and the answer's reason (the addressee's free text, which may speak of the person);
# the field names stay for the operator's view, and an open case keeps its own redacted reason.
# The rows are found through an index of those that still hold one of them (its predicate is this
# condition: ``notifications_purge_pending``, migration 0027), not among every answered row.
_PAYLOADS = """WITH emptied AS (UPDATE notifications SET payload = NULL, reason = NULL, conflicts = coalesce((
                       SELECT jsonb_agg(jsonb_build_object('field', c->'field'))
                       FROM jsonb_array_elements(conflicts) c), conflicts)
                   WHERE id = ANY(ARRAY(
                       SELECT id FROM notifications WHERE feedback_at < $1 AND (payload IS NOT NULL
                           OR reason IS NOT NULL
                           OR jsonb_path_exists(conflicts, '$[*] ? (exists(@.ours) || exists(@.theirs))'))
                       LIMIT $2))
                   RETURNING 1)
               SELECT count(*) FROM emptied"""

# A payload nobody answered: the notification went overdue at its deadline and is sent no more
# (``delivery.due_for_resend``); the payload waits that long after the deadline for a late answer
# or a late pick-up over REST, then goes. The notification stays, overdue, with its ids, state,
# deadline and sends, and a late answer still closes it (``repository.close_notifications``). The
# state is checked again on the row itself, so an answer that lands meanwhile keeps its payload
# for the answered retention. The overdue ones are read through an index of those that still
# have a payload (``notifications_overdue_payload``), the few the sweep has not marked yet through
# the pending ones' (``notifications_pending_deadline``): every overdue notification stays in
# ``notifications_open``, and a scan of it read those emptied long ago at every round.
_UNANSWERED = """WITH emptied AS (UPDATE notifications SET payload = NULL
                     WHERE state IN ('pending', 'overdue') AND id = ANY(ARRAY(
                         SELECT id FROM notifications WHERE state = 'overdue' AND payload IS NOT NULL
                             AND created_at < $1 AND deadline < $1
                         UNION ALL
                         SELECT id FROM notifications WHERE state = 'pending' AND payload IS NOT NULL
                             AND created_at < $1 AND deadline < $1
                         LIMIT $2))
                     RETURNING 1)
                 SELECT count(*) FROM emptied"""

# A parked event long past its deadline, with its pair's count of parked events kept right.
_PARKED = """WITH gone AS (DELETE FROM parked_events WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM parked_events WHERE parked_at < $1 LIMIT $2)) RETURNING subject, source),
             per_pair AS (SELECT subject, source, count(*) AS n FROM gone GROUP BY 1, 2),
             counted AS (UPDATE sequence_progress p SET parked = greatest(p.parked - per_pair.n, 0)
                         FROM per_pair WHERE p.subject = per_pair.subject AND p.source = per_pair.source)
             SELECT count(*) FROM gone"""

_CENSUS = """WITH gone AS (DELETE FROM dead_letter_census WHERE id = ANY(ARRAY(
                 SELECT id FROM dead_letter_census WHERE created_at < $1 LIMIT $2)) RETURNING 1)
             SELECT count(*) FROM gone"""


def purges(settings: ExchangeSettings) -> list[Purge]:
    return [
        Purge("notification_payloads", settings.retention_notification_payload_days * DAY, _PAYLOADS),
        Purge("unanswered_payloads", settings.retention_unanswered_payload_days * DAY, _UNANSWERED),
        Purge("parked_events", settings.retention_parked_event_days * DAY, _PARKED),
        Purge("dead_letter_census", settings.retention_dead_letter_days * DAY, _CENSUS),
    ]
