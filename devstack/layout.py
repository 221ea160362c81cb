"""Where things are: the repository, the services' folders, the demo jurisdictions."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES_DIR = ROOT / "services"
ORIGIN, DESTINATION = "320412", "440703"
# A jurisdiction not on Kafka (东城区): no registry process, no keys in the trust list; its own
# system lists, fetches and answers its notifications over the exchange's REST API.
REST_ONLY = "110101"
