"""Benchmark: ``exchangectl replay verification`` restores identical answers after truncation.

Imports people with ``exchangectl import``, issues 1,000 certificates through the registry API,
asks the verification API about each (plus some holder mismatches), truncates the read model,
replays it from the registries' outboxes and asks again: every answer must be the same.

    python -m bench.replay [--certificates 1000]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.common import workdir, write_result
from bench.import_roster import _query
from devstack.embedded import EmbeddedPostgres
from devstack.roster_fixture import generate
from devstack.stack import DESTINATION, ORIGIN, ROOT, Stack


def _ctl(stack: Stack, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--stack", str(stack.run_dir / "stack.json"), "--json"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _answers(stack: Stack, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {stack.token(f'kiosk-{DESTINATION}')}"}
    with httpx.Client(base_url=stack.service("verification").url, headers=headers, timeout=30) as http:

        def one(pair: tuple[str, str]) -> dict[str, Any]:
            body = {"certificate_number": pair[0], "holder_id_number": pair[1], "purpose": "benefits"}
            r = http.post("/v1/verifications", json=body)
            r.raise_for_status()
            return {k: v for k, v in r.json().items() if k != "checked_at"}

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, pairs))


def run(certificates: int = 1000) -> dict[str, Any]:
    d = workdir("bench-replay-")
    pg = EmbeddedPostgres(d / "pgdata", cleanup="delete")
    stack = Stack(d / "stack", pg=pg, db_prefix="replay_")
    try:
        stack.start()
        roster = d / "roster.csv"
        generate(roster, certificates + 20, 0, seed=31)
        _ctl(stack, "import", str(roster), "-j", ORIGIN)
        with roster.open(encoding="utf-8") as f:
            holders = [row[0] for row in list(csv.reader(f))[1:]][:certificates]
        headers = {"Authorization": f"Bearer {stack.token(f'reg-{ORIGIN}')}"}
        with httpx.Client(
            base_url=stack.service(f"registry-{ORIGIN}").url, headers=headers, timeout=30
        ) as http:

            def issue(holder: str) -> str:
                r = http.post("/v1/certificates", json={"holder_id_number": holder})
                r.raise_for_status()
                return str(r.json()["certificate_number"])

            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                numbers = list(pool.map(issue, holders))
            issue_seconds = time.monotonic() - started
        pairs = list(zip(numbers, holders, strict=True)) + [(numbers[i], holders[-1 - i]) for i in range(20)]
        verification = stack.service("verification").dsn
        deadline = time.monotonic() + 120
        while (
            _query(verification, "SELECT count(*) FROM certificates") < certificates
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        before = _answers(stack, pairs)
        _query(verification, "TRUNCATE certificates")
        after_truncate = sum(a["result"] == "not_found" for a in _answers(stack, pairs[:50]))
        started = time.monotonic()
        replay = _ctl(stack, "replay", "verification")
        replay_seconds = time.monotonic() - started
        after = _answers(stack, pairs)
        same = sum(a == b for a, b in zip(before, after, strict=True))
    finally:
        stack.stop()
        pg.stop()
        shutil.rmtree(d, ignore_errors=True)
    return {
        "certificates": certificates,
        "sampled_answers": len(pairs),
        "results_before": sorted({a["result"] for a in before}),
        "not_found_after_truncate_of_50": after_truncate,
        "identical_after_replay": same,
        "replayed_events": replay["events"],
        "replay_seconds": round(replay_seconds, 2),
        "replay_events_per_second": replay["events_per_second"],
        "issue_seconds": round(issue_seconds, 1),
        "rows": [
            {
                "metric": f"identical verification answers after truncate + replay ({len(pairs)} sampled)",
                "value": same,
                "unit": "answers",
                "target": f"= {len(pairs)}",
                "met": same == len(pairs),
            },
            {
                "metric": "replay of the verification read model",
                "value": replay["events_per_second"],
                "unit": "ev/s",
            },
            {
                "metric": "replay wall time (command, incl. start-up)",
                "value": round(replay_seconds, 2),
                "unit": "s",
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=1000)
    args, _ = parser.parse_known_args()
    result = run(args.certificates)
    print(json.dumps(result, indent=2))
    write_result("replay", result)


if __name__ == "__main__":
    main()
