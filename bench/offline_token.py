"""Offline token verification per core, against the raw Ed25519 verify rate of the same library.

Both loops run in this one process (one core): the raw loop verifies signatures with
``cryptography`` directly; the offline loop runs ``shared.offline_verifier`` end to end (JWS
parsing, key lookup, status-list bit, expiry, purpose filtering) on distinct tokens.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Any

from bench.common import write_result
from shared import signing
from shared.offline_verifier import OfflineVerifier, encode_bitstring

N = 20_000
ISSUER = "320412"


def _setup() -> tuple[OfflineVerifier, list[str], Any, list[tuple[bytes, bytes]]]:
    issuer_key, list_key = signing.new_private_key(), signing.new_private_key()
    jwks = {
        "keys": [
            signing.jwk("k1", signing.public_bytes(issuer_key), jurisdiction=ISSUER, status="active"),
            signing.jwk("s1", signing.public_bytes(list_key), jurisdiction=None, purpose="status-list"),
        ]
    }
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    status = {
        "jws": signing.sign(
            {
                "validUntil": until,
                "credentialSubject": {
                    "statusPurpose": "revocation",
                    "jurisdiction": ISSUER,
                    "encodedList": encode_bitstring(range(0, N, 97)),
                },
            },
            list_key,
            "s1",
        )
    }
    tokens = [
        signing.sign(
            {
                "iss": ISSUER,
                "num": f"{ISSUER}-2026-{i:08d}",
                "sub": "a" * 32,
                "name": "李娜",
                "ms": "married",
                "ch": 1,
                "iat": "2026-01-01",
                "exp": "2027-12-31",
                "sti": i,
            },
            issuer_key,
            "k1",
        )
        for i in range(N)
    ]
    raw = []
    for t in tokens:
        head, payload, sig = t.split(".")
        raw.append((signing.b64u_decode(sig), f"{head}.{payload}".encode()))
    public = issuer_key.public_key()
    return OfflineVerifier(jwks, [status]), tokens, public, raw


def main(rounds: int = 5) -> dict[str, Any]:
    """Alternate the two loops over several rounds (the machine is noisy); report medians."""
    verifier, tokens, public, raw = _setup()
    raw_rates, offline_rates = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for sig, data in raw:
            public.verify(sig, data)
        raw_rates.append(N / (time.perf_counter() - start))
        start = time.perf_counter()
        results = [verifier.verify(t, "arrival_registration").result for t in tokens]
        offline_rates.append(N / (time.perf_counter() - start))
        revoked = results.count("revoked")
        assert revoked == len(range(0, N, 97)) and results.count("valid") == N - revoked
    ratio = statistics.median(o / r for o, r in zip(offline_rates, raw_rates, strict=True))
    raw_rate, offline_rate = statistics.median(raw_rates), statistics.median(offline_rates)
    return {
        "raw_ed25519_verifies_per_s": raw_rate,
        "offline_verifications_per_s": offline_rate,
        "ratio": ratio,
        "rows": [
            {
                "metric": "offline token verifications per core",
                "value": offline_rate,
                "unit": "/s",
                "ceiling": raw_rate,
                "target": ">= 0.7 of raw Ed25519",
                "met": ratio >= 0.7,
            }
        ],
        "per_round_ratios": [o / r for o, r in zip(offline_rates, raw_rates, strict=True)],
    }


if __name__ == "__main__":
    import json

    out = main()
    write_result("offline_token", out)
    print(json.dumps(out, indent=2))
