"""Periodic duties that sweep through errors are counted by outcome, so an alert can tell when
one no longer succeeds (``BackgroundDutyFailing``) instead of a warning in the log alone."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from services.migrant_exchange.entrypoints.background import _every

SERVICE = "duty-test"


def _rounds(duty: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "background_duty_rounds_total", {"service": SERVICE, "duty": duty, "outcome": outcome}
    )
    return value or 0.0


async def test_a_duty_that_keeps_failing_is_counted_round_after_round_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sweep's database refuses it at every round (as when one waiting event rolled back
    every release of expired gaps): each round is counted failed, the duty goes on, and when the
    cause goes away the rounds count ok again. The log names the error's class, never its text."""
    failing = True
    calls = 0

    async def sweep() -> None:
        nonlocal calls
        calls += 1
        if failing:
            raise RuntimeError("row for 11010119900307002X refused")

    task = asyncio.create_task(_every(0.01, SERVICE, "sweep", sweep))
    try:
        with caplog.at_level(logging.WARNING):
            while calls < 5:
                await asyncio.sleep(0.01)
        assert _rounds("sweep", "failed") >= 4 and _rounds("sweep", "ok") == 0
        assert not task.done()
        failing = False
        before = calls
        while calls < before + 3:
            await asyncio.sleep(0.01)
        assert _rounds("sweep", "ok") >= 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    warned = [r for r in caplog.records if r.getMessage() == "background duty failed"]
    assert warned and all(r.__dict__["error"] == "RuntimeError" for r in warned)
    assert "11010119900307002X" not in caplog.text


async def test_both_outcomes_are_exported_before_the_first_round() -> None:
    """A counter that first appears at 1 shows Prometheus no increase: both series exist at 0 from
    the duty's start, so its first failure already counts."""

    async def never_runs() -> None:
        raise AssertionError("the first round comes after an hour")

    task = asyncio.create_task(_every(3600, SERVICE, "reconciliation", never_runs))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for outcome in ("ok", "failed"):
        assert (
            REGISTRY.get_sample_value(
                "background_duty_rounds_total",
                {"service": SERVICE, "duty": "reconciliation", "outcome": outcome},
            )
            == 0.0
        )
