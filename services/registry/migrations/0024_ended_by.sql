-- Who recorded the end of a marriage or a pregnancy held here: this registry (a spouse's divorce
-- recorded at her residence, a closure when the child was born here), or the counterpart whose
-- notification (or repair) told of it. A counterpart's record this registry ended itself is
-- partly its own: `exchangectl replay counterpart` keeps it (adapters/records.py), as no
-- notification brings that end back; a replay that forgot it held her married again, her
-- pregnancy open.
ALTER TABLE marriages ADD COLUMN IF NOT EXISTS ended_by text;
ALTER TABLE pregnancies ADD COLUMN IF NOT EXISTS ended_by text;

-- Ends recorded before: ours where our own outbox (never purged) holds the event announcing it;
-- the others' stay unknown (NULL), which no rule reads as ours.
UPDATE marriages m SET ended_by = m.jurisdiction
  FROM (SELECT DISTINCT e -> 'data' ->> 'marriage_id' AS id, e ->> 'source' AS source
          FROM (SELECT convert_from(value, 'UTF8')::jsonb AS e
                  FROM outbox WHERE event_type = 'marriage.dissolved.v1') x) o
 WHERE m.dissolution_date IS NOT NULL AND o.id = m.id::text AND o.source = '/registry/' || m.jurisdiction;
UPDATE pregnancies n SET ended_by = n.jurisdiction
  FROM (SELECT DISTINCT e -> 'data' ->> 'pregnancy_id' AS id, e ->> 'source' AS source
          FROM (SELECT convert_from(value, 'UTF8')::jsonb AS e
                  FROM outbox WHERE event_type = 'pregnancy.closed.v1') x) o
 WHERE n.closed_on IS NOT NULL AND o.id = n.id::text AND o.source = '/registry/' || n.jurisdiction;
