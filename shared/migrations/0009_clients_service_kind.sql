-- A service's own credential towards another (the exchange's towards the registries' internal
-- reconciliation endpoints, scope reconcile:internal) is a client kind of its own: operators, whose
-- tokens sit in browsers and terminals, see operations, never per-person records (DESIGN.md 10).
ALTER TABLE clients DROP CONSTRAINT clients_kind_check;
ALTER TABLE clients ADD CONSTRAINT clients_kind_check
    CHECK (kind IN ('jurisdiction', 'kiosk', 'department', 'operator', 'service'));
