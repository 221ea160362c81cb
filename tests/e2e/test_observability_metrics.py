"""The Grafana dashboard and the alert rules name only metrics the running services export."""

from __future__ import annotations

import re

import httpx
import pytest

from devstack.stack import Stack
from tests.unit.test_observability_rules import dashboard_exprs, metric_names, rule_exprs

pytestmark = pytest.mark.e2e


def _exported(stack: Stack) -> set[str]:
    """Every series name on any service's /metrics, declared (HELP/TYPE) or sampled."""
    names: set[str] = set()
    for svc in stack.services:
        text = httpx.get(svc.url + "/metrics", timeout=5).text
        for line in text.splitlines():
            if m := re.match(r"# TYPE (\S+) (\w+)", line):
                name, kind = m.groups()
                names.add(name)
                if kind == "histogram":
                    names.update(f"{name}{s}" for s in ("_bucket", "_sum", "_count"))
                if kind == "counter":
                    names.add(name if name.endswith("_total") else name + "_total")
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_grafana_and_alert_rules_use_only_exported_metrics(stack: Stack) -> None:
    exported = _exported(stack)
    used = {name for expr in dashboard_exprs() + rule_exprs() for name in metric_names(expr)}
    assert used, "no metric found in the dashboard"
    missing = used - exported
    assert not missing, f"named in deploy/ but not exported by any service: {sorted(missing)}"
    # What the issue asks every service to export is there.
    for name in (
        "http_request_duration_seconds_bucket",
        "events_produced_total",
        "events_consumed_total",
        "events_applied_total",
        "outbox_backlog",
        "outbox_oldest_age_seconds",
        "inbox_duplicates_total",
        "dlq_messages_total",
        "consumer_lag",
    ):
        assert name in exported, name
