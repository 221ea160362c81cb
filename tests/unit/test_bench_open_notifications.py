"""``bench.open_notifications`` measures the exchange's statements over open notifications as the
adapters run them (a benchmark may not import a service's adapters, so it holds copies)."""

from __future__ import annotations

import inspect

from bench import open_notifications as bench
from services.migrant_exchange.adapters import delivery, repository, stats


def test_the_benchmark_measures_the_statements_as_they_are() -> None:
    assert bench.SUMMARY == stats.NOTIFICATION_SUMMARY
    assert bench.OPEN_BY_INDEX == stats._OPEN_BY_INDEX
    assert bench.FOLD_OVERDUE_COUNT == repository.FOLD_OVERDUE_COUNT
    assert bench.MARK_OVERDUE in inspect.getsource(repository.mark_overdue)
    assert bench.CLOSE in inspect.getsource(repository.close_notifications)
    assert bench.DUE_FOR_RESEND in inspect.getsource(delivery.due_for_resend)
