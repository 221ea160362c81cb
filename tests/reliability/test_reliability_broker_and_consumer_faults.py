"""Faults in the middle of a stream: the broker restarts empty, a consumer is killed with SIGKILL.

Each test pushes a stream of ``migration.departed.v1`` events through the origin registry's
outbox and counts every stage: published, applied by the exchange, notified, applied at the
destination registry, closed by feedback. Exactly once in effect, none lost.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from devstack.stack import Stack
from tests.reliability.fault_tools import count, emit_departures, migrants, wait_complete

pytestmark = pytest.mark.e2e


async def test_broker_restart_in_the_middle_of_5000_events(fault_stack: Stack) -> None:
    people = migrants(5000)
    halfway = asyncio.Event()
    emitting = asyncio.create_task(emit_departures(fault_stack, people, started=halfway))
    await halfway.wait()
    assert fault_stack.broker is not None
    before = await count(fault_stack, people, [])
    await asyncio.to_thread(fault_stack.broker.restart)  # memory-only: it comes back with no topics
    event_ids = await emitting
    assert before.roster_moves < len(people), "the restart came after the stream: it proves nothing"
    counts = await wait_complete(fault_stack, people, event_ids, timeout=90)
    print(f"\nbroker restart mid-stream: {counts}")
    assert counts.complete(), counts
    assert counts.roster_moves == 5000, counts  # a redelivered event would have moved someone twice
    assert counts.destination_repeated == 0, counts
    assert counts.lost == 0


async def test_consumer_killed_with_sigkill_mid_batch(fault_stack: Stack) -> None:
    people = migrants(2000)
    exchange = fault_stack.service("migrant_exchange")
    halfway = asyncio.Event()
    emitting = asyncio.create_task(emit_departures(fault_stack, people, batch=100, started=halfway))
    await halfway.wait()
    await asyncio.sleep(0.3)  # the exchange is now applying batches
    at_kill = await count(fault_stack, people, [])
    await asyncio.to_thread(fault_stack.restart_service, exchange, signal.SIGKILL)
    event_ids = await emitting
    assert at_kill.roster_moves < len(people), "the kill came after the stream: it proves nothing"
    counts = await wait_complete(fault_stack, people, event_ids, timeout=90)
    print(f"\nexchange SIGKILLed mid-batch: {counts}")
    assert counts.complete(), counts
    assert counts.roster_moves == 2000, counts
    assert counts.destination_repeated == 0, counts
    assert counts.lost == 0


async def test_quick_broker_bounce_between_two_quiet_streams(fault_stack: Stack) -> None:
    """The hard case: the broker is gone for a blink, nobody's publish fails, and it comes back
    empty; the next events are acknowledged by a broker that no longer has their topics."""
    first_people, second_people = migrants(300), migrants(300)
    first = await emit_departures(fault_stack, first_people)
    assert (await wait_complete(fault_stack, first_people, first, timeout=60)).complete()
    assert fault_stack.broker is not None
    await asyncio.to_thread(fault_stack.broker.restart)
    second = await emit_departures(fault_stack, second_people)
    counts = await wait_complete(fault_stack, second_people, second, timeout=90)
    print(f"\nquick broker bounce, events right after: {counts}")
    assert counts.complete(), counts
    assert counts.roster_moves == len(second_people) and counts.destination_repeated == 0
    assert counts.lost == 0
