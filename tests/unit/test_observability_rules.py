"""The Prometheus alert rules and the Grafana dashboard in deploy/ are valid and name real metrics.

With Debian's ``promtool`` (package ``prometheus``) the rules are checked and unit-tested by it;
without it a parser stands in: structure, balanced PromQL and known metric names.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "migrant-exchange.json"
# Words in PromQL that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "topk", "bottomk", "quantile", "count_values",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "abs", "clamp_min",
    "clamp_max", "vector", "scalar", "time", "absent", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "and", "or", "unless", "offset", "label_values", "inf", "nan",
}  # fmt: skip
ALERTS_NEEDED = {"OutboxNotDraining", "ConsumerLagHigh", "NotificationsOverdue", "DeadLettersGrowing",
                 "VerificationErrorRate"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, groupings and ranges removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    tokens = re.findall(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
    return {t for t in tokens if t.lower() not in PROMQL_WORDS}


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in doc["templating"]["list"] if v.get("type") == "query"]
    return [re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", e) for e in exprs]


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket{route=~"/v1/x", status="5.."}[5m]))) > 0.5'
    ) == {"http_request_duration_seconds_bucket"}
    assert metric_names("sum by (state) (exchange_notifications_open) / on (service) outbox_backlog") == {
        "exchange_notifications_open",
        "outbox_backlog",
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing (apt-get install prometheus)")
def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yaml"], cwd=RULES.parent, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_rules_parse_and_name_only_metrics_the_code_defines() -> None:
    """The parser stand-in for promtool, run always: structure, brackets, metric names."""
    import services.migrant_exchange.entrypoints.dashboard  # noqa: F401 - registers its gauges
    import shared.observability  # noqa: F401

    known = _registered_names()
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = set()
    for group in doc["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            alerts.add(rule["alert"])
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule
            expr = rule["expr"]
            assert _balanced(expr), expr
            assert metric_names(expr) <= known, (rule["alert"], metric_names(expr) - known)
    assert alerts >= ALERTS_NEEDED


def test_grafana_dashboard_names_only_metrics_the_code_defines() -> None:
    import services.migrant_exchange.entrypoints.dashboard  # noqa: F401
    import shared.observability  # noqa: F401

    known = _registered_names()
    for expr in dashboard_exprs():
        assert _balanced(expr), expr
        assert metric_names(expr) and metric_names(expr) <= known, (expr, metric_names(expr) - known)


def _registered_names() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": (),
        }.get(family.type, ())
        names.update(family.name + s for s in suffixes)
    return names


def _balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack
