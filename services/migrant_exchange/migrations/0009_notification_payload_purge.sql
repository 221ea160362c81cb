-- A notification's payload is kept only until the addressee applied it (then purged: NULL).
ALTER TABLE notifications ALTER COLUMN payload DROP NOT NULL;
UPDATE notifications SET payload = NULL WHERE state = 'applied';
