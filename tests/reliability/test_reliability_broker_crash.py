"""A bad night: the broker is SIGKILLed mid-stream and comes back empty 5 s later; a consumer that
cannot recover; two replicas of every service with the relay leader killed during the outage.

The stream is ``migration.departed.v1`` events for 2,000 people written into the origin
registry's outbox at about 65 a second (as registrars' systems wrote them on the night the stall
was first seen). Every stage is counted per event id (``fault_tools.count``): published,
applied by the exchange, routed, applied at the destination registry, closed by its feedback.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
import yaml

from devstack.stack import DESTINATION, ORIGIN, Stack
from tests.helpers import metric
from tests.reliability.fault_tools import Counts, count, emit_departures, migrants, wait_complete
from tests.stacks_ahead import StackSpec, stack_fixture

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEST_REGISTRY = f"registry-{DESTINATION}"
RECOVERY_SECONDS = 60  # every notification applied at every registry within this of the restart


def readiness(url: str) -> tuple[int, dict[str, object]]:
    try:
        r = httpx.get(url + "/readyz", timeout=3)
        return r.status_code, r.json()
    except httpx.HTTPError as e:
        return 0, {"error": type(e).__name__}


def stall_alert_threshold() -> float:
    """The threshold of the ConsumerStalled rule, read from the shipped alert rules."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ConsumerStalled")
    found = re.search(r">\s*([0-9.]+)\s*$", rule["expr"])
    assert found, rule["expr"]
    return float(found.group(1))


async def timeline(stack: Stack, samples: list[tuple[float, int, int, int]], every: float = 3.0) -> None:
    """Every few seconds: events waiting in the origin's outbox, notifications pending and closed
    at the exchange (the whole stack's, cheap to count), to show where a slow recovery spent its time."""
    origin = await asyncpg.connect(stack.service(f"registry-{ORIGIN}").dsn)
    exchange = await asyncpg.connect(stack.service("migrant_exchange").dsn)
    try:
        while True:
            unpublished = await origin.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            states = dict(await exchange.fetch("SELECT state, count(*) FROM notifications GROUP BY state"))
            samples.append(
                (time.monotonic(), unpublished, states.get("pending", 0), states.get("applied", 0))
            )
            await asyncio.sleep(every)
    finally:
        await origin.close()
        await exchange.close()


async def crash_broker_mid_stream(stack: Stack, people: list[str], during_outage: object = None) -> Counts:
    """SIGKILL the broker 5 s into the stream, start it again 5 s later with the same command line,
    and wait for every event to be applied and answered. Returns the counts; asserts the recovery
    time."""
    assert stack.broker is not None
    samples: list[tuple[float, int, int, int]] = []
    emitting = asyncio.create_task(emit_departures(stack, people, batch=13, pause=0.2))
    watching = asyncio.create_task(timeline(stack, samples))
    await asyncio.sleep(5)
    before = await count(stack, people, [])
    await asyncio.to_thread(stack.broker.kill)
    if callable(during_outage):
        await asyncio.to_thread(during_outage)
    await asyncio.sleep(5)
    await asyncio.to_thread(stack.broker.start)
    restarted = time.monotonic()
    event_ids = await emitting
    assert before.roster_moves < len(people), "the crash came after the stream: it proves nothing"
    counts = await wait_complete(stack, people, event_ids, timeout=RECOVERY_SECONDS + 30)
    took = time.monotonic() - restarted
    watching.cancel()
    print(
        f"\nbroker SIGKILLed mid-stream, back after 5 s: all applied {took:.1f} s after the restart: {counts}"
        f"\n(s after the restart: origin outbox unpublished / exchange notifications pending / closed) "
        + " ".join(f"{at - restarted:.0f}:{u}/{p}/{c}" for at, u, p, c in samples)
    )
    assert counts.complete(), counts
    assert took <= RECOVERY_SECONDS, f"recovered in {took:.1f} s"
    return counts


async def test_broker_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(fault_stack: Stack) -> None:
    dest = fault_stack.service(DEST_REGISTRY)
    redelivered_before = metric(dest.url, "inbox_duplicates_total", consumer=DEST_REGISTRY)
    people = migrants(2000)
    counts = await crash_broker_mid_stream(fault_stack, people)
    assert counts.lost == 0
    assert counts.roster_moves == len(people), counts  # the exchange moved each person once
    assert counts.destination_repeated == 0, counts
    # The broker's log was lost and the outboxes re-sent their recent events: the destination
    # registry read notifications it had applied already, and they changed nothing.
    assert metric(dest.url, "inbox_duplicates_total", consumer=DEST_REGISTRY) > redelivered_before
    for svc in fault_stack.services:
        status, report = readiness(svc.url)
        assert status == 200, (svc.name, report)


async def test_a_consumer_that_cannot_recover_is_reported_within_two_minutes(fault_stack: Stack) -> None:
    """The destination registry's consumer is kept from applying anything (its inbox table is
    locked, so every batch waits): /readyz turns not ready, the stall metric crosses the alert
    rule's threshold, the consumer is replaced; once the lock goes, everything is applied."""
    dest = fault_stack.service(DEST_REGISTRY)
    threshold = stall_alert_threshold()
    replaced_before = metric(dest.url, "consumer_restarts_total", consumer=DEST_REGISTRY, reason="stalled")
    blocker = await asyncpg.connect(dest.dsn)
    lock = blocker.transaction()
    await lock.start()
    await blocker.execute("LOCK TABLE inbox IN SHARE MODE")  # writers wait; readers do not
    people = migrants(30)
    started = time.monotonic()
    try:
        event_ids = await emit_departures(fault_stack, people)
        not_ready_after = crossed_after = None
        while time.monotonic() - started < 120 and (not_ready_after is None or crossed_after is None):
            status, report = await asyncio.to_thread(readiness, dest.url)
            # The locked inbox holds up the registry's disclosures consumer too: whichever is seen
            # first, not ready must come from a stalled consumer, and the notifications' must be one.
            if status == 503:
                assert "stalled" in report["consumers"].values(), report  # type: ignore[union-attr]
            if not_ready_after is None and status == 503 and report["consumers"][DEST_REGISTRY] == "stalled":  # type: ignore[index]
                not_ready_after = time.monotonic() - started
            progress = await asyncio.to_thread(
                metric, dest.url, "consumer_last_progress_seconds", consumer=DEST_REGISTRY
            )
            if crossed_after is None and progress > threshold:
                crossed_after = time.monotonic() - started
            await asyncio.sleep(1)
        print(
            f"\nstalled consumer: not ready after {not_ready_after} s, metric > {threshold} after {crossed_after} s"
        )
        assert not_ready_after is not None and not_ready_after <= 120
        assert crossed_after is not None and crossed_after <= 120
        replaced = metric(dest.url, "consumer_restarts_total", consumer=DEST_REGISTRY, reason="stalled")
        assert replaced > replaced_before  # the watchdog put a fresh consumer in
    finally:
        await lock.rollback()
        await blocker.close()
    counts = await wait_complete(fault_stack, people, event_ids, timeout=90)
    assert counts.complete() and counts.destination_repeated == 0, counts
    deadline = time.monotonic() + 30
    while (
        status := (await asyncio.to_thread(readiness, dest.url))[0]
    ) != 200 and time.monotonic() < deadline:
        await asyncio.sleep(1)
    assert status == 200


# Two processes of every service, as the chart's HPA runs them: one database each. Its tests time
# recoveries, so no other stack starts while they run.
replicated_stack = stack_fixture(
    "replicated_stack", StackSpec("replicas", db_prefix="rep_", replicas=2, ahead=False)
)


async def test_broker_sigkill_with_two_replicas_and_the_relay_leader_killed(replicated_stack: Stack) -> None:
    """The origin registry's relay leader is SIGKILLed while the broker is down: the other replica
    takes the relay over, notices the broker lost its log, and re-sends what the dead leader had
    published into the lost log. The killed replica stays dead."""
    stack = replicated_stack
    origin = stack.replicas_of(f"registry-{ORIGIN}")
    leaders = [r for r in origin if readiness(r.url)[1].get("relay") == "leader"]
    assert len(leaders) == 1, [readiness(r.url) for r in origin]
    leader = leaders[0]

    def kill_leader() -> None:
        stack.stop_service(leader, signal.SIGKILL)

    people = migrants(2000)
    counts = await crash_broker_mid_stream(stack, people, during_outage=kill_leader)
    assert counts.lost == 0 and counts.roster_moves == len(people), counts
    assert counts.destination_repeated == 0, counts
    survivor = next(r for r in origin if r is not leader)
    assert readiness(survivor.url)[1].get("relay") == "leader"


def test_the_embedded_stack_restarts_what_crashed(fault_stack: Stack) -> None:
    """What ``make run`` does every half second: a SIGKILLed broker and service are restarted, and
    the services recover by themselves (an event goes end to end afterwards)."""
    assert fault_stack.broker is not None
    exchange = fault_stack.service("migrant_exchange")
    fault_stack.broker.kill()
    assert exchange.process is not None
    exchange.process.send_signal(signal.SIGKILL)
    exchange.process.wait()
    said = fault_stack.supervise_once()
    assert any("broker" in line for line in said) and any("migrant_exchange" in line for line in said), said
    fault_stack.wait_ready(exchange, timeout=60)
    people = migrants(20)

    async def stream() -> Counts:
        ids = await emit_departures(fault_stack, people)
        return await wait_complete(fault_stack, people, ids, timeout=60)

    counts = asyncio.run(stream())
    assert counts.complete(), counts
    assert fault_stack.supervise_once() == []
