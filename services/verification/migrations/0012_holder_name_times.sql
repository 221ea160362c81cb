-- Corrections travel on another topic than certificates, so a holder's name correction and a
-- certificate's own correction of the name can arrive after the certificate, in either order.
-- Each certificate keeps when it was issued (issued_at: the issue event's envelope time) and when
-- its holder's name was last set by a correction (holder_name_at; NULL: as issued), both the
-- issuer's own clock signed with the event, so that a correction of the name arriving later applies
-- only if made later: her name correction only if made after the certificate and after the
-- name's last correction, the certificate's own if made at or after the name's last correction.
-- Certificates kept before this migration have no issue time: -infinity, any later correction
-- of her name applies to them, as before.
ALTER TABLE certificates ADD COLUMN issued_at timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE certificates ALTER COLUMN issued_at DROP DEFAULT;
ALTER TABLE certificates ADD COLUMN holder_name_at timestamptz;
