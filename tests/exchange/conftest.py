"""A stack with three registries (320412, 440703, 110101) for the exchange's end-to-end tests.

Short deadlines make the lifecycle observable in seconds: the pair (320412, 510104) -- a
jurisdiction with no registry on Kafka -- has a 2-second feedback deadline.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.exchange.exchange_helpers import OFFLINE, A, B, C
from tests.stacks_ahead import StackSpec, stack_fixture


def _agreements(workdir: Path) -> dict[str, str]:
    agreements = workdir / "exchange-agreements.yaml"
    agreements.write_text(
        yaml.safe_dump(
            [
                {"division_a": "*", "division_b": "*", "event_types": ["*"]},
                {"division_a": A, "division_b": OFFLINE, "event_types": ["*"], "deadline_seconds": 2},
            ]
        )
    )
    return {"AGREEMENTS_FILE": str(agreements)}


# Stopped once this directory's tests are done.
xstack = stack_fixture(
    "xstack",
    StackSpec(
        "xstack",
        db_prefix="x_",
        registries=(A, B, C),
        extra_env={
            "OVERDUE_SWEEP_INTERVAL": "0.3",
            "SEQUENCE_GAP_SECONDS": "3",
            "NOTIFICATION_RETRY_SECONDS": "30",
        },
        files=_agreements,
    ),
    scope="package",
)
