"""What verification keeps only for a while (``shared.retention``): corrections that came ahead of
a certificate that never followed."""

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


def purges(settings: VerificationSettings) -> list[Purge]:
    return [Purge("corrections_ahead", settings.retention_correction_ahead_days * DAY, _CORRECTIONS_AHEAD)]
