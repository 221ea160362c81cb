-- The operations picture's open notifications without reading the overdue ones one by one
-- (adapters/stats.py). `notifications_open` kept every overdue notification for good, and the
-- picture, sampled every second, fetched each of them to count them: at ~1.7 M notifications a
-- day even a small overdue share grows without bound. The pending ones are a range of indexes
-- the table has already (`notifications_state_created`, `notifications_pending_deadline`), the
-- oldest overdue one is the first entry of the first; their number is counted here as
-- notifications enter and leave the state. Nothing else read `notifications_open`, and every
-- notification entered it.
DROP INDEX notifications_open;

CREATE TABLE notifications_overdue_count (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    n    bigint NOT NULL
);
-- Each change since the sweep last folded them into the count (repository.fold_overdue_count):
-- a row each, so a sweep that marks many at once adds as many rows, rather than as many versions
-- of one row (a statement's own versions cannot be pruned before it commits, and each update
-- would walk them all). The picture reads the count plus these, in one snapshot.
CREATE TABLE notifications_overdue_changes (delta int NOT NULL);

CREATE FUNCTION notifications_overdue_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM notifications_overdue_changes;
        UPDATE notifications_overdue_count SET n = 0;
    ELSIF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.state = 'overdue') THEN
        INSERT INTO notifications_overdue_changes (delta) VALUES (1);
    ELSE
        INSERT INTO notifications_overdue_changes (delta) VALUES (-1);
    END IF;
    RETURN NULL;
END $$;
-- Only a row that enters or leaves `overdue` fires: an answer to a pending notification, the
-- pipeline's path, tests the condition and queues nothing.
CREATE TRIGGER notifications_overdue_inserted AFTER INSERT ON notifications
    FOR EACH ROW WHEN (NEW.state = 'overdue') EXECUTE FUNCTION notifications_overdue_changed();
CREATE TRIGGER notifications_overdue_updated AFTER UPDATE OF state ON notifications
    FOR EACH ROW WHEN ((OLD.state = 'overdue') <> (NEW.state = 'overdue'))
    EXECUTE FUNCTION notifications_overdue_changed();
CREATE TRIGGER notifications_overdue_deleted AFTER DELETE ON notifications
    FOR EACH ROW WHEN (OLD.state = 'overdue') EXECUTE FUNCTION notifications_overdue_changed();
CREATE TRIGGER notifications_overdue_truncated AFTER TRUNCATE ON notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notifications_overdue_changed();
-- The count as it stands: the triggers' lock holds off every write to notifications until this
-- migration commits.
INSERT INTO notifications_overdue_count (n) SELECT count(*) FROM notifications WHERE state = 'overdue';
