"""A revocation reaches a running service even when the read it set off failed (real PostgreSQL).

Every service keeps the ``clients`` table in memory (``shared.auth.ClientRegistry``) and reads it
again when a change is notified. If that one read fails (the table unreadable for a moment: here
renamed away in the revoking transaction and back a moment later), the change must still be read
once the table is back, or the revoked client keeps its access until some unrelated change.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from prometheus_client import REGISTRY

from devstack.embedded import EmbeddedPostgres
from tests.helpers import in_process_registry

READ = "/v1/persons/110101199003074114/disclosures"


def _rounds(outcome: str) -> float:
    labels = {"service": "registry", "duty": "clients-refresh", "outcome": outcome}
    return REGISTRY.get_sample_value("background_duty_rounds_total", labels) or 0.0


def test_a_revocation_whose_notified_read_failed_is_read_once_the_table_is_back(pg: EmbeddedPostgres) -> None:
    with in_process_registry(pg, "clients-read", "320412", "clients-read-secret") as (client, dsn):
        assert client.get(READ).status_code != 401  # admitted (the person is unknown: 404)
        failed, ok = _rounds("failed"), _rounds("ok")

        async def revoke_with_the_table_away() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                async with conn.transaction():  # the notification goes out with the commit
                    await conn.execute(
                        "UPDATE clients SET revoked_at = now() WHERE client_id = 'reg-clients-read'"
                    )
                    await conn.execute("ALTER TABLE clients RENAME TO clients_away")
                await asyncio.sleep(1.0)  # the notified read finds no table
                await conn.execute("ALTER TABLE clients_away RENAME TO clients")  # no notification
            finally:
                await conn.close()

        asyncio.run(revoke_with_the_table_away())
        deadline = time.monotonic() + 5
        while client.get(READ).status_code != 401:
            assert time.monotonic() < deadline, "the revoked client is still admitted"
            time.sleep(0.2)
        # The failed read is counted (alert BackgroundDutyFailing if none succeeds), then the retry.
        assert _rounds("failed") > failed and _rounds("ok") > ok
