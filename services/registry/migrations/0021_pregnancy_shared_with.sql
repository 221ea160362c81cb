-- Who else holds a pregnancy registered here: the mother's origin and residence when it was
-- registered, other than this registry (the exchange sent it to them). A copy's other holder is
-- its sender (source_division). A counterpart reads a pregnancy of the records here only if it
-- holds it (domain/access.py held_by): a read discloses no more than the notifications did, so a
-- place she moved to later, never given the pregnancy, does not read it here either.
ALTER TABLE pregnancies ADD COLUMN IF NOT EXISTS shared_with text[] NOT NULL DEFAULT '{}';

-- Pregnancies registered before: from the origin and destination of the event announcing each
-- (our own outbox, never purged). One without its event stays shared with nobody here.
UPDATE pregnancies p
   SET shared_with = ARRAY(
           SELECT DISTINCT d FROM unnest(ARRAY[o.e->>'origin', o.e->>'destination']) AS d
            WHERE d IS NOT NULL AND d <> p.jurisdiction ORDER BY d)
  FROM (SELECT event_id, convert_from(value, 'UTF8')::jsonb AS e
          FROM outbox WHERE event_type = 'pregnancy.registered.v1') o
 WHERE o.event_id = p.event_id AND p.source_division = p.jurisdiction;
