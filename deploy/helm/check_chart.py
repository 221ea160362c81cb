"""Render, lint and schema-validate the Helm chart with the embedded Helm engine (`make chart-check`).

For the default values and every `ci/*-values.yaml` the chart is linted and rendered by
Helm's own Go library (helm-python-sdk, no helm binary, no cluster) and every rendered
manifest is validated against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields fail). Every `ci/bad-*.yaml` must be refused by values.schema.json
with the message named on its `# expect:` line. The chart's copies of the alert rules and
the Grafana dashboard (`files/`) must equal deploy/prometheus and deploy/grafana. Exits
non-zero on any failure. The agreements of every values file are checked against the event
catalog and the payload models, as the services check them when they start.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import yaml

try:
    import helm_python
    import kubernetes_validate
except ImportError as e:  # the dev extra is not installed
    raise SystemExit(
        f"chart-check needs helm-python-sdk and kubernetes-validate (pip install -e '.[dev]'): {e}"
    ) from e

CHART = Path(__file__).resolve().parent
RELEASE = "migrant-exchange"
NAMESPACE = "migrant-exchange"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest with schemas.
KUBE_VERSIONS = ("1.29", ".".join(kubernetes_validate.latest_version().split(".")[:2]))
# Custom resources kubernetes-validate has no schema for; checked for shape only.
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "KafkaTopic": "kafka.strimzi.io/v1beta2",
    "KafkaUser": "kafka.strimzi.io/v1beta2",
}
# Files the chart ships as copies (Helm reads only files inside the chart) -> their originals.
COPIES = {
    CHART / "files" / "alerts.yaml": CHART.parent / "prometheus" / "alerts.yaml",
    CHART / "files" / "migrant-exchange.json": CHART.parent / "grafana" / "migrant-exchange.json",
}
SEVERITY = {1: "info", 2: "warning", 3: "error"}

Manifest = dict[str, Any]


def values_files() -> list[Path]:
    """The values files that must install: the defaults and every ci/*-values.yaml."""
    good = [p for p in sorted((CHART / "ci").glob("*-values.yaml")) if not p.name.startswith("bad-")]
    return [CHART / "values.yaml", *good]


def bad_values_files() -> list[Path]:
    """The values files that must be refused: ci/bad-*.yaml."""
    return sorted((CHART / "ci").glob("bad-*.yaml"))


def load_values(path: Path) -> dict[str, Any]:
    """A values file as a dict (the chart's own values.yaml counts as no overrides)."""
    if path == CHART / "values.yaml":
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    assert isinstance(loaded, dict), f"{path}: not a mapping"
    return loaded


def render(values: dict[str, Any]) -> list[tuple[str, Manifest]]:
    """Every rendered manifest (hooks included) as (template path, object), empty documents dropped."""
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        (source, doc)
        for source, text in sorted(rendered.items())
        if source.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def lint(values: dict[str, Any]) -> list[str]:
    """Helm lint findings of severity warning or worse."""
    report = helm_python.lint(CHART, values=values, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}.0")
    found = [
        f"lint {SEVERITY.get(m['severity'], '?')}: {m['path']}: {m['error'].strip()}"
        for m in report["messages"]
        if m["severity"] >= 2
    ]
    return found or [f"lint: {e.strip()}" for e in report["errors"]]


def validate(manifests: list[tuple[str, Manifest]]) -> tuple[list[str], int]:
    """Kubernetes schema errors of the manifests, and how many were validated."""
    errors: list[str] = []
    validated = 0
    for source, doc in manifests:
        what = f"{source}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") in CRD_KINDS:
            if doc.get("apiVersion") != CRD_KINDS[doc["kind"]] or not isinstance(doc.get("spec"), dict):
                errors.append(f"{what}: expected apiVersion {CRD_KINDS[doc['kind']]} and a spec")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{what}: Kubernetes {version}: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{what}: {e.message}")
        validated += 1
    return errors, validated


def expected_message(path: Path) -> str:
    """The schema message a bad values file names on its `# expect:` line."""
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return line.removeprefix("# expect:").strip()
    raise SystemExit(f"{path}: no '# expect: <schema message>' line")


def check_refused(path: Path) -> list[str]:
    """A bad values file must fail both render (= install) and lint with the schema's message."""
    values, expected = load_values(path), expected_message(path)
    try:
        render(values)
    except helm_python.HelmValuesError as e:
        if expected not in str(e):
            return [f"{path.name}: refused, but without {expected!r}: {e}"]
    else:
        return [f"{path.name}: rendered although it breaks values.schema.json"]
    if not any(expected in problem for problem in lint(values)):
        return [f"{path.name}: lint did not report {expected!r}"]
    print(f"ok    {path.relative_to(CHART)}: refused: {expected}")
    return []


def check_copies() -> list[str]:
    """The chart's copies of the alert rules and the dashboard equal their originals."""
    problems = []
    for copy, original in COPIES.items():
        if not copy.is_file() or copy.read_bytes() != original.read_bytes():
            problems.append(
                f"{copy.relative_to(CHART)} differs from {original.relative_to(CHART.parent.parent)}: "
                f"cp {original.relative_to(CHART.parent.parent)} {copy.relative_to(CHART.parent.parent)}"
            )
        else:
            print(f"ok    {copy.relative_to(CHART)}: equals {original.relative_to(CHART.parent.parent)}")
    return problems


def check_agreements(values: dict[str, Any]) -> list[str]:
    """The agreements as the services will read them: event types of the catalog, real payload
    fields, restrictions the receiver accepts (``shared.agreements``, which refuses to start on
    anything else). The schema checks shapes only; this checks names."""
    sys.path.insert(0, str(CHART.parent.parent))
    from shared import agreements

    try:
        agreements.parse(values.get("exchange", {}).get("agreements") or [], "exchange.agreements")
    except agreements.AgreementError as e:
        return [str(e)]
    return []


def check_installs(path: Path) -> list[str]:
    """Lint, render and validate the chart with one values file, and check its agreements."""
    values = load_values(path)
    problems = lint(values) + check_agreements(values)
    try:
        manifests = render(values)
    except helm_python.HelmError as e:
        return [*problems, f"render: {e}"]
    errors, validated = validate(manifests)
    problems += errors
    kinds = sorted({doc["kind"] for _, doc in manifests})
    status = "FAIL" if problems else "ok"
    print(
        f"{status:5} {path.relative_to(CHART)}: {len(manifests)} manifests ({validated} validated against "
        f"Kubernetes {' and '.join(KUBE_VERSIONS)}): {', '.join(kinds)}"
    )
    return [f"{path.relative_to(CHART)}: {p}" for p in problems]


def main() -> int:
    started = time.monotonic()
    problems = check_copies()
    for path in values_files():
        problems += check_installs(path)
    for path in bad_values_files():
        problems += check_refused(path)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    verdict = f"{len(problems)} problem(s)" if problems else "chart ok"
    print(f"{verdict} in {time.monotonic() - started:.1f}s (Helm {helm_python.helm_sdk_version()})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
