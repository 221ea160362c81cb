"""Benchmark only (``bench.trust_cost``): this tree with event signing and checking switched off.

Put on ``PYTHONPATH`` ahead of the tree, Python imports it at start-up in every process of the
stack (services inherit the environment): the relay then publishes events as written and every
consumer skips the signature and authority check. Everything else, the sealing of notification
payloads included, runs as in production, so the difference to the unmodified tree is what
signing and checking cost. Nothing outside the benchmark puts this directory on a path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import shared.events.signature as _signature


def _as_written(keyring: Any, values: Sequence[bytes], now: Any) -> list[bytes | None]:
    return list(values)


_signature.sign_outgoing_batch = _as_written  # before shared.outbox_relay imports it by name

import shared.consumer as _consumer  # noqa: E402


def _unchecked(self: Any, event: Any, doc: object) -> None:
    return None


_consumer.EventConsumer.check = _unchecked  # type: ignore[method-assign]
