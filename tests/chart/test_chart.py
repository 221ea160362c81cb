"""Security invariants of the Helm chart, asserted on the output of Helm's own renderer.

The chart is rendered by helm-python-sdk (Helm's Go library) for the default values and
every deploy/helm/ci/*-values.yaml; the helpers come from deploy/helm/check_chart.py,
loaded by path so `make chart-check` and these tests see the same manifests.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

pytest.importorskip("helm_python", reason="helm-python-sdk (Helm's Go library) is not installed")
pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

CHECK_CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "check_chart.py"
POD_KINDS = {"Deployment", "Job"}


def _load_check_chart() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_chart", CHECK_CHART)
    assert spec and spec.loader, CHECK_CHART
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cc = _load_check_chart()
VALUES_FILES = {path.name: path for path in cc.values_files()}


@functools.cache
def manifests(values_file: str) -> list[dict[str, Any]]:
    return [doc for _, doc in cc.render(cc.load_values(VALUES_FILES[values_file]))]


@functools.cache
def merged_values(values_file: str) -> dict[str, Any]:
    import helm_python

    with helm_python.Chart.load(cc.CHART) as chart:
        merged: dict[str, Any] = chart.merge_values(cc.load_values(VALUES_FILES[values_file]))
    return merged


def of_kind(values_file: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests(values_file) if doc["kind"] == kind]


def pod_specs(values_file: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"])
        for doc in manifests(values_file)
        if doc["kind"] in POD_KINDS
    ]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and In expressions) matches these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


values_files = pytest.mark.parametrize("values_file", sorted(VALUES_FILES))


@values_files
def test_every_manifest_matches_the_kubernetes_schemas(values_file: str) -> None:
    errors, validated = cc.validate(cc.render(cc.load_values(VALUES_FILES[values_file])))
    assert not errors
    assert validated >= len(of_kind(values_file, "Deployment")) * 6


@values_files
def test_no_container_runs_as_root(values_file: str) -> None:
    """Every container, Jobs included, runs as a non-zero UID, cannot escalate, and has a read-only root."""
    for name, pod in pod_specs(values_file):
        pod_ctx = pod.get("securityContext", {})
        for c in containers(pod):
            ctx = {**pod_ctx, **c.get("securityContext", {})}
            where = f"{name} container {c['name']}"
            assert ctx.get("runAsNonRoot") is True, where
            assert isinstance(ctx.get("runAsUser"), int) and ctx["runAsUser"] > 0, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("privileged", False) is False, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in ctx.get("capabilities", {}).get("drop", []), where
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]  # noqa: S108
            assert tmp, f"{where}: /tmp must be a writable emptyDir under a read-only root"
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[tmp[0]["name"]], where


@values_files
def test_every_container_has_limits_and_probes(values_file: str) -> None:
    """Every container has cpu and memory requests and limits; every serving container has probes.

    Jobs (migrations, topic creation) run to completion and serve nothing, so they carry
    limits but no liveness/readiness probes.
    """
    for name, pod in pod_specs(values_file):
        for c in containers(pod):
            where = f"{name} container {c['name']}"
            resources = c.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where}: {bound}"
            if name.startswith("Deployment/"):
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where


@values_files
def test_every_deployment_has_a_matching_pdb(values_file: str) -> None:
    pdbs = of_kind(values_file, "PodDisruptionBudget")
    deployments = of_kind(values_file, "Deployment")
    assert deployments
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if selects(p["spec"]["selector"], labels)]
        assert len(matching) == 1, f"Deployment/{deployment['metadata']['name']}: {len(matching)} PDBs"
        assert matching[0]["spec"]["selector"] == deployment["spec"]["selector"]
    assert len(pdbs) == len(deployments)


@values_files
def test_network_policies_exist_for_every_service(values_file: str) -> None:
    """Each pod is fenced in: REST only from the ingress controller (and metrics scrapers, when
    configured); egress only to DNS, Kafka, PostgreSQL and the configured extra egress rules."""
    values = merged_values(values_file)
    np_values = values["networkPolicy"]
    allowed_from = [np_values["ingressController"], *np_values["metricsFrom"]]
    kafka, postgresql = values["kafka"]["networkPolicy"], values["postgresql"]["networkPolicy"]
    allowed_ports = {53, *kafka["ports"], *postgresql["ports"]}
    policies = of_kind(values_file, "NetworkPolicy")
    for kind in POD_KINDS:
        for workload in of_kind(values_file, kind):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            where = f"{kind}/{workload['metadata']['name']}"
            covering = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
            assert len(covering) == 1, f"{where}: {len(covering)} NetworkPolicies"
            spec = covering[0]["spec"]
            assert set(spec["policyTypes"]) == {"Ingress", "Egress"}, where
            for rule in spec.get("ingress", []):
                assert rule["from"], f"{where}: an ingress rule open to everyone"
                assert all(peer in allowed_from for peer in rule["from"]), where
                assert rule["ports"] == [{"protocol": "TCP", "port": "http"}], where
            if kind == "Job":
                assert not spec.get("ingress"), f"{where}: a Job accepts no connections"
            for rule in spec["egress"]:
                if rule in np_values["extraEgress"]:
                    continue
                assert rule.get("ports"), f"{where}: egress to every port"
                assert {p["port"] for p in rule["ports"]} <= allowed_ports, where


@values_files
def test_one_template_renders_every_service(values_file: str) -> None:
    """Each registry instance, the exchange and verification get the same set of objects, and
    the exchange consumers and verification scale with a HorizontalPodAutoscaler."""
    values = merged_values(values_file)
    registries = [f"registry-{i['name']}" for i in values["registry"]["instances"]]
    components = {*registries, "exchange", "verification"}
    kinds = ("Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy")
    for kind in kinds:
        labels = [d["metadata"]["labels"] for d in of_kind(values_file, kind)]
        assert {label["app.kubernetes.io/component"] for label in labels} >= components, kind
    hpas = of_kind(values_file, "HorizontalPodAutoscaler")
    autoscaled = {h["metadata"]["labels"]["app.kubernetes.io/component"] for h in hpas}
    assert {"exchange", "verification"} <= autoscaled
    for deployment in of_kind(values_file, "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        assert ("replicas" in deployment["spec"]) != (component in autoscaled), component


SHORT_CODE_INSTANCE = {
    "name": "x",
    "jurisdictions": ["32041"],
    "databaseSecret": {"name": "db", "key": "dsn"},
}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"verification": {"replicas": "two"}}, "at '/verification/replicas': got string, want integer"),
        ({"podSecurityContext": {"runAsUser": 0}}, "at '/podSecurityContext/runAsUser': minimum"),
        ({"registry": {"instances": [SHORT_CODE_INSTANCE]}}, "at '/registry/instances/0/jurisdictions/0'"),
        ({"kafka": {"securityProtocol": "SASL_SSL"}}, "at '/kafka/sasl/username': minLength"),
        ({"exchange": {"replicaCount": 2}}, "additional properties 'replicaCount' not allowed"),
    ],
)
def test_a_wrong_value_fails_with_the_schema_message(overrides: dict[str, Any], message: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError) as refused:
        cc.render(overrides)
    assert message in str(refused.value)


def test_bad_values_file_is_refused() -> None:
    bad = cc.bad_values_files()
    assert bad, "deploy/helm/ci/bad-values.yaml is missing"
    for path in bad:
        assert cc.check_refused(path) == []


# Values whose content is free-form (or a list): documented as one row, not key by key.
OPAQUE_VALUES = {
    "resources",
    "dbPool",
    "podAnnotations",
    "nodeSelector",
    "tolerations",
    "affinity",
    "config",
    "labels",
    "annotations",
    "ingressController",
    "namespaceSelector",
    "podSelector",
}


def value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in OPAQUE_VALUES:
            paths += value_paths(value, f"{prefix}{key}.")
        else:
            paths.append(f"{prefix}{key}")
    return paths


def test_readme_documents_every_value() -> None:
    readme = (cc.CHART / "README.md").read_text()
    values = yaml.safe_load((cc.CHART / "values.yaml").read_text())
    missing = []
    for path in value_paths(values):
        head, _, rest = path.partition(".")
        candidates = (
            {path, f"<service>.{rest}"} if head in {"registry", "exchange", "verification"} else {path}
        )
        candidates |= {c.removesuffix(".key") + ".name` / `.key" for c in candidates if c.endswith(".key")}
        if not any(f"`{c}`" in readme for c in candidates):
            missing.append(path)
    assert not missing, f"values not documented in deploy/helm/README.md: {missing}"
