-- birth.registered.v2 (docs/contracts.md): the place of birth as the birth medical certificate
-- records it. The division stays in birth_division; the kind of place and the institution are
-- new, and null for births recorded before v2 or received as v1 (never guessed).
ALTER TABLE births ADD COLUMN birth_place_kind text
    CHECK (birth_place_kind IN ('hospital', 'maternal_child_health_centre', 'township_health_centre',
                                'home', 'in_transit', 'other'));
ALTER TABLE births ADD COLUMN birth_institution text CHECK (length(birth_institution) BETWEEN 1 AND 100);
