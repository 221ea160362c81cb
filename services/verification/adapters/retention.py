"""What verification keeps only for a while (``shared.retention``): corrections that came ahead of
a certificate that never followed, and holders' names as their issuers corrected them."""

from __future__ import annotations

from services.verification.settings import VerificationSettings
from shared.retention import Purge

DAY = 86400.0

# An issuer's correction of a certificate not seen yet waits in ``corrections_ahead`` for it
# (the corrected name, status, children or validity: the holder's data). One whose certificate
# never came (lost upstream, or issued before this read model began) goes after its retention.
_CORRECTIONS_AHEAD = """WITH gone AS (DELETE FROM corrections_ahead WHERE id = ANY(ARRAY(
                            SELECT id FROM corrections_ahead WHERE recorded_at < $1 LIMIT $2)) RETURNING 1)
                        SELECT count(*) FROM gone"""

# An issuer's correction of a holder's name waits in ``name_corrections`` for its certificates
# of her issued before it and not seen yet (the name: the holder's data); it goes after the same
# retention, counted from the latest correction kept.
_NAME_CORRECTIONS = """WITH gone AS (DELETE FROM name_corrections WHERE (holder_subject, corrector) IN (
                          SELECT holder_subject, corrector FROM name_corrections WHERE recorded_at < $1 LIMIT $2)
                          RETURNING 1)
                      SELECT count(*) FROM gone"""


def purges(settings: VerificationSettings) -> list[Purge]:
    days = settings.retention_correction_ahead_days * DAY
    return [
        Purge("corrections_ahead", days, _CORRECTIONS_AHEAD),
        Purge("name_corrections", days, _NAME_CORRECTIONS),
    ]
