"""Benchmark: ``exchangectl replay verification`` restores identical answers after truncation.

Imports people with ``exchangectl import``, issues 1,000 certificates through the registry API,
asks the verification API about each (plus some holder mismatches), truncates the read model,
replays it from the registries' outboxes and asks again: every answer must be the same.

For the rate, a log worth measuring: ``--log-events`` more certificate events (issues, and a
revocation for every twentieth) are written into the destination registry's outbox beforehand,
marked published (a log of the past, which the running service already had), so the replay
rebuilds from all of them; then as many registrations and departures into the origin's outbox,
from which ``replay exchange-roster`` rebuilds the exchange's roster. The rate is events replayed per second of the whole command, from
reading the outboxes to the commit, in bulk (the default) and event by event.

    python -m bench.replay [--certificates 1000] [--log-events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.common import departure, workdir, write_result
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


_DAY = dt.date(2026, 1, 1)


def _person(i: int) -> str:
    from shared.identity import compose_id_number

    return compose_id_number("110101", _DAY - dt.timedelta(days=9000 + i // 900), i % 900, "F")


def _certificate_event(i: int) -> tuple[str, str, Any, int]:
    """(type, identity number, payload, sequence): issues, and every twentieth revokes the one before."""
    from shared.events import payloads as p

    if i % 20 == 19:
        revoked = p.CertificateRevokedV1(
            certificate_number=f"{DESTINATION}-2025-{i - 1:08d}",
            issuer=DESTINATION,
            revoked_on=_DAY,
            reason="replaced",
            status_index=1_000_000 + i - 1,
        )
        return "certificate.revoked.v1", _person(i - 1), revoked, 1
    issued = p.CertificateIssuedV1(
        certificate_number=f"{DESTINATION}-2025-{i:08d}",
        holder_id_number=_person(i),
        holder_name="测试",
        marital_status="married",
        children_birth_dates=[_DAY],
        issuer=DESTINATION,
        issued_on=_DAY,
        valid_until=_DAY + dt.timedelta(days=180),
        key_id="bench-past",
        status_index=1_000_000 + i,
        token="e30.e30.sig",  # noqa: S106 - a placeholder, never verified as a token
    )
    return "certificate.issued.v1", _person(i), issued, 1


def _roster_event(i: int) -> tuple[str, str, Any, int]:
    """A registration at the origin, then (the next event) that person's departure."""

    from shared.events import payloads as p

    person = _person(i // 2)
    if i % 2 == 0:
        data: Any = p.PersonRegisteredV1(
            id_number=person,
            name="测试",
            sex="F",
            birth_date=_DAY - dt.timedelta(days=9000),
            hukou_division=ORIGIN,
            residence_division=ORIGIN,
        )
        return "person.registered.v1", person, data, 1
    return "migration.departed.v1", person, departure(person, _DAY), 2


async def _seed_log(dsn: str, producer: str, n: int, secret: bytes, factory: Any) -> int:
    """``n`` events of the past in a registry's outbox, marked published (the running services
    had them long ago): the log a replay rebuilds from."""
    import asyncpg

    from shared.db import init_connection
    from shared.identity import subject_key
    from shared.outbox import add_events, make_event

    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    written = 0
    try:
        for start in range(0, n, 10_000):
            events = []
            for i in range(start, min(n, start + 10_000)):
                kind, person, data, sequence = factory(i)
                subject = subject_key(person, secret)
                source = f"/registry/{producer}"
                events.append(
                    make_event(event_type=kind, source=source, subject=subject, data=data, sequence=sequence)
                )
            async with conn.transaction():
                await add_events(conn, events)
                await conn.execute(
                    "UPDATE outbox SET published_at = now() WHERE published_at IS NULL AND "
                    "event_id = ANY($1::uuid[])",
                    [e.id for e in events],
                )
            written += len(events)
    finally:
        await conn.close()
    return written


def run(certificates: int = 1000, log_events: int = 50_000) -> dict[str, Any]:
    d = workdir("bench-replay-")
    pg = EmbeddedPostgres(d / "pgdata", cleanup="delete")
    # the benchmark asks 1,000+ questions at once: lift the per-client limit meant for kiosks
    stack = Stack(
        d / "stack",
        pg=pg,
        db_prefix="replay_",
        extra_env={"RATE_LIMIT_PER_MINUTE": "600000", "RATE_LIMIT_BURST": "100000"},
    )
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
        secret = stack.subject_secret.encode()
        seeded = asyncio.run(
            _seed_log(
                stack.service(f"registry-{DESTINATION}").dsn,
                DESTINATION,
                log_events,
                secret,
                _certificate_event,
            )
        )
        _query(verification, "TRUNCATE certificates")
        after_truncate = sum(a["result"] == "not_found" for a in _answers(stack, pairs[:50]))
        started = time.monotonic()
        replay = _ctl(stack, "replay", "verification")
        replay_seconds = time.monotonic() - started
        after = _answers(stack, pairs)
        same = sum(a == b for a, b in zip(before, after, strict=True))
        in_model = _query(verification, "SELECT count(*) FROM certificates")
        one_by_one = _ctl(stack, "replay", "verification", "--event-by-event")
        same_one_by_one = sum(a == b for a, b in zip(before, _answers(stack, pairs), strict=True))
        asyncio.run(
            _seed_log(stack.service(f"registry-{ORIGIN}").dsn, ORIGIN, log_events, secret, _roster_event)
        )
        roster_replay = _ctl(stack, "replay", "exchange-roster")
        roster_rows = _query(stack.service("migrant_exchange").dsn, "SELECT count(*) FROM roster")
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
        "replay_mode": replay["mode"],
        "log_events_seeded": seeded,
        "certificates_after_replay": in_model,
        "event_by_event": {
            "events_per_second": one_by_one["events_per_second"],
            "identical_answers": same_one_by_one,
        },
        "roster": {
            "events": roster_replay["events"],
            "events_per_second": roster_replay["events_per_second"],
            "mode": roster_replay["mode"],
            "roster_rows": roster_rows,
        },
        "targets": {"events_per_second": 20_000},
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
                "metric": f"replay of the verification read model ({replay['events']:,} events, bulk)",
                "value": replay["events_per_second"],
                "unit": "ev/s",
                "target": ">= 20000 ev/s",
                "met": replay["events_per_second"] >= 20_000,
            },
            {
                "metric": f"replay of the exchange roster ({roster_replay['events']:,} events, {roster_replay['mode']})",
                "value": roster_replay["events_per_second"],
                "unit": "ev/s",
                "target": ">= 20000 ev/s",
                "met": roster_replay["events_per_second"] >= 20_000,
            },
            {
                "metric": "the verification replay event by event (the consumer's handler)",
                "value": one_by_one["events_per_second"],
                "unit": "ev/s",
            },
            {
                "metric": "identical answers after the event-by-event replay",
                "value": same_one_by_one,
                "unit": "answers",
                "target": f"= {len(pairs)}",
                "met": same_one_by_one == len(pairs),
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
    parser.add_argument("--log-events", type=int, default=50_000)
    args, _ = parser.parse_known_args()
    result = run(args.certificates, args.log_events)
    print(json.dumps(result, indent=2))
    write_result("replay", result)


if __name__ == "__main__":
    main()
