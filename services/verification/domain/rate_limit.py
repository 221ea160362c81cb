"""A token bucket per client: pure arithmetic over a clock the caller passes in."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """``rate`` requests per second sustained, ``burst`` at once, per key.

    In-process: with several replicas (or uvicorn workers) each limits on its own, so the
    effective limit of a client is the per-replica limit times the replicas it reaches.
    """

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> float:
        """Spend one token; return 0 if allowed, else the seconds until one is available."""
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(self.burst, now)
        else:
            b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate

    @staticmethod
    def retry_after_header(wait: float) -> int:
        """Retry-After is whole seconds; never tell a client 0."""
        return max(1, math.ceil(wait))
