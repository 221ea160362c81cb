-- Agreements restrict fields per direction: agreements.visible_fields is now
-- {receiving division: {event type: [fields]}} (the table is replaced from the file at each start).
-- A notification names the fields withheld from its addressee: absent from the payload by contract.
ALTER TABLE notifications ADD COLUMN withheld_fields text[] NOT NULL DEFAULT '{}';

-- Who received a pregnancy's registration: its closure reaches them all, wherever the mother
-- lives by then (a pregnancy id, no personal data). Rows go once the closure is routed.
CREATE TABLE pregnancy_recipients (
    pregnancy_id     uuid NOT NULL,
    target_division  text NOT NULL,
    PRIMARY KEY (pregnancy_id, target_division)
);
