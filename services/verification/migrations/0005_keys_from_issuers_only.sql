-- Issuer keys come only from a source bound to the issuer (the trust list's key URL): keys once
-- learned from certificate events are not trusted any more.
DELETE FROM issuer_keys WHERE source = 'event';
