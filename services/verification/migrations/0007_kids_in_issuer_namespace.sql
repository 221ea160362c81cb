-- An issuer's kids are minted in its own namespace (<division>-...): a key held under a kid of
-- another issuer's namespace was taken first-come from a document that may not speak for it,
-- and would keep the minter's own key out for ever (services/verification/domain/keys.py).
DELETE FROM issuer_keys WHERE NOT starts_with(kid, issuer || '-');
