"""``bench.retention_scan`` measures the exchange's purges as ``adapters/retention.py`` runs them
(a benchmark may not import a service's adapters, so it holds copies of the statements)."""

from __future__ import annotations

from bench import retention_scan
from services.migrant_exchange.adapters import retention
from services.migrant_exchange.settings import ExchangeSettings


def test_the_benchmark_measures_the_purges_statements_as_they_are() -> None:
    sql = {p.name: p.sql for p in retention.purges(ExchangeSettings())}
    assert sql["notification_payloads"] == retention_scan.PAYLOADS
    assert sql["unanswered_payloads"] == retention_scan.UNANSWERED
