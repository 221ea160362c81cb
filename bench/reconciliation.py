"""Reconciliation benchmark: two registries with 1,000,000 shared subjects and 100 planted differences.

``python -m bench.reconciliation [SUBJECTS]`` starts the stack (embedded PostgreSQL, Tansu, two
registries and the exchange), seeds both registries' databases directly, plants differences
(missing births, conflicting marriage dates, duplicate births), runs ``POST /v1/reconciliations``
and prints the seconds it took and whether exactly the planted differences were found.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from bench.common import write_result
from devstack.stack import Stack
from tests.exchange.exchange_seed import plant, seed_side, subject_of

A, C = "320412", "110101"
KINDS = [
    ("missing_birth", "missing", 3),
    ("marriage_date", "field_conflict", 10),
    ("duplicate_birth", "duplicate", 6),
]


def planted_subjects(subjects: int, differences: int) -> list[tuple[str, int]]:
    """Spread the differences over the subjects; each kind needs a subject with that record."""
    stride = max(30, subjects // differences // 30 * 30)
    out = []
    for j in range(differences):
        what, _, offset = KINDS[j % 3]
        out.append((what, (j * stride) % (subjects - 30) // 30 * 30 + offset))
    return out


async def seed(stack: Stack, subjects: int, differences: int, tag: str) -> set[tuple[str, str, str]]:
    dsn_a, dsn_c = stack.service(f"registry-{A}").dsn, stack.service(f"registry-{C}").dsn
    await asyncio.gather(seed_side(dsn_a, A, A, C, tag, subjects), seed_side(dsn_c, C, A, C, tag, subjects))
    expected = set()
    for what, i in planted_subjects(subjects, differences):
        key = await plant(dsn_a, A, dsn_c, C, tag, i, what)
        kind = next(k for w, k, _ in KINDS if w == what)
        expected.add((kind, subject_of(tag, i), key))
    return expected


async def cases_of(stack: Stack, reconciliation_id: str) -> list[asyncpg.Record]:
    """The run's cases as the exchange keeps them (with the subject and record keys)."""
    conn = await asyncpg.connect(stack.service("migrant_exchange").dsn)
    try:
        sql = "SELECT kind, subject, record_key FROM discrepancies WHERE reconciliation_id = $1::uuid"
        return list(await conn.fetch(sql, reconciliation_id))
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    subjects = int(argv[1]) if len(argv) > 1 else 1_000_000
    differences = int(argv[2]) if len(argv) > 2 else 100
    with tempfile.TemporaryDirectory(prefix="bench-recon-") as d:
        Path(d).chmod(0o755)  # the embedded PostgreSQL runs as its own system user
        stack = Stack(
            Path(d),
            db_prefix="bench_",
            registries=[A, C],
            pg_cleanup="delete",
            extra_env={"RECONCILIATION_TIMEOUT_SECONDS": "900", "LOG_LEVEL": "WARNING"},
        )
        try:
            stack.start()
            t0 = time.monotonic()
            expected = asyncio.run(seed(stack, subjects, differences, "bench"))
            print(f"seeded {subjects:,} subjects per side in {time.monotonic() - t0:.1f}s")
            base = stack.service("migrant_exchange").url
            auth = {"Authorization": f"Bearer {stack.token('operator')}"}
            with httpx.Client(base_url=base, headers=auth, timeout=900) as http:
                t1 = time.monotonic()
                r = http.post("/v1/reconciliations", json={"division_a": A, "division_b": C})
                seconds = time.monotonic() - t1
                r.raise_for_status()
                run = r.json()
                # Operators read cases without subject or record keys: the exchange's table has them.
                found = asyncio.run(cases_of(stack, run["reconciliation_id"]))
        finally:
            stack.stop()
    got = {(x["kind"], x["subject"], x["record_key"]) for x in found}
    exact = got == expected
    write_result(
        "reconciliation",
        {
            "subjects": subjects,
            "planted": len(expected),
            "found": len(got),
            "exact": exact,
            "run": run,
            "rows": [
                {
                    "metric": f"reconcile {subjects:,} subjects, {len(expected)} planted differences",
                    "value": round(seconds, 2),
                    "unit": "s",
                    "target": "exactly the planted differences",
                    "met": exact,
                }
            ],
        },
    )
    print(
        f"reconciliation of {subjects:,} subjects ({run['records_a']:,} / {run['records_b']:,} records): "
        f"{seconds:.2f}s, {run['differing_buckets']} differing buckets, {len(got)} differences found, "
        f"{len(expected)} planted, exactly the planted ones: {exact}"
    )
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
