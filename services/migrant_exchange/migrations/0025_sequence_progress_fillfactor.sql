-- A (subject, source) row is inserted by the batch that first meets the pair and updated by the
-- same transaction once its events are judged (and again by every later event of the pair).
-- Room left on each page lets that update stay on the page without a new index entry (a
-- heap-only tuple: last_sequence and parked are in no index).
ALTER TABLE sequence_progress SET (fillfactor = 50);
