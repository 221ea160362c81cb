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
from pydantic_settings import BaseSettings

from services.migrant_exchange.settings import ExchangeSettings
from services.registry.settings import RegistrySettings
from services.verification.settings import VerificationSettings

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


def plain_env(values_file: str, deployment: dict[str, Any]) -> dict[str, str]:
    """A Deployment's plain settings: the ConfigMap its container takes its environment from."""
    configs = {c["metadata"]["name"]: c["data"] for c in of_kind(values_file, "ConfigMap")}
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    data: dict[str, str] = configs[container["envFrom"][0]["configMapRef"]["name"]]
    return data


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


def release_peer(peer: dict[str, Any], values_file: str) -> list[str] | None:
    """The components a NetworkPolicy peer names if it selects pods of this release only, else None."""
    if set(peer) != {"podSelector"}:  # no namespaceSelector or ipBlock: this namespace only
        return None
    selector = peer["podSelector"]
    deployment = of_kind(values_file, "Deployment")[0]["spec"]["selector"]["matchLabels"]
    release = {k: deployment[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    if selector.get("matchLabels") != release:
        return None
    [expression] = selector["matchExpressions"]
    assert expression["key"] == "app.kubernetes.io/component" and expression["operator"] == "In"
    return list(expression["values"])


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
def test_kubernetes_kills_a_pod_only_after_its_own_shutdown_bound(values_file: str) -> None:
    """A stopping pod gets uvicorn's 5 s for open connections and its SHUTDOWN_TIMEOUT, which
    logs what the stop waited for when it overruns: the grace period outlasts both."""
    for deployment in of_kind(values_file, "Deployment"):
        bound = float(plain_env(values_file, deployment)["SHUTDOWN_TIMEOUT"])
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= 5 + bound + 5, deployment["metadata"]["name"]


def test_a_changed_trust_list_rolls_every_deployment() -> None:
    """Services read the trust list once: a key taken out of it (a compromised one) is out only
    when every pod has restarted, so the list's content is in every pod template."""
    values = cc.load_values(VALUES_FILES["production-values.yaml"])

    def templates(trust: dict[str, Any]) -> dict[str, dict[str, str]]:
        docs = cc.render({**values, "trust": {"list": trust}})
        return {
            doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["annotations"]
            for _, doc in docs
            if doc["kind"] == "Deployment"
        }

    listed = values["trust"]["list"]
    before, after = templates(listed), templates({**listed, "divisions": {}})
    assert before and before.keys() == after.keys()
    for name in before:
        assert before[name]["checksum/trust-list"] != after[name]["checksum/trust-list"], name
        assert before[name]["checksum/config"] == after[name]["checksum/config"], name


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
                for peer in rule["from"]:
                    assert peer in allowed_from or release_peer(peer, values_file), where
                assert rule["ports"] == [{"protocol": "TCP", "port": "http"}], where
            if kind == "Job":
                assert not spec.get("ingress"), f"{where}: a Job accepts no connections"
            for rule in spec["egress"]:
                if rule in np_values["extraEgress"]:
                    continue
                assert rule.get("ports"), f"{where}: egress to every port"
                if rule.get("to") and all(release_peer(peer, values_file) for peer in rule["to"]):
                    assert kind == "Deployment", f"{where}: a Job calls no other component"
                    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}], where
                    continue
                assert {p["port"] for p in rule["ports"]} <= allowed_ports, where


@values_files
def test_the_exchange_and_verification_reach_the_registries(values_file: str) -> None:
    """REGISTRY_URLS and REGISTRY_KEY_URLS name the release's registries, and the NetworkPolicies
    let exchange and verification (and nobody else of the release) call them."""
    values = merged_values(values_file)
    registries = {f"registry-{i['name']}" for i in values["registry"]["instances"]}
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p
        for p in of_kind(values_file, "NetworkPolicy")
    }
    configs = {c["metadata"]["name"]: c["data"] for c in of_kind(values_file, "ConfigMap")}
    for client in ("exchange", "verification"):
        reached = {
            name
            for rule in policies[client]["spec"]["egress"]
            for peer in rule.get("to", [])
            for name in release_peer(peer, values_file) or []
        }
        assert reached == registries, client
    for registry in registries:
        callers = {
            name
            for rule in policies[registry]["spec"]["ingress"]
            for peer in rule["from"]
            for name in release_peer(peer, values_file) or []
        }
        assert callers == {"exchange", "verification"}, registry
    urls = dict(item.split("=", 1) for item in configs[f"{cc.RELEASE}-exchange"]["REGISTRY_URLS"].split(","))
    key_urls = configs[f"{cc.RELEASE}-verification"]["REGISTRY_KEY_URLS"].split(",")
    for instance in values["registry"]["instances"]:
        host = f"{cc.RELEASE}-registry-{instance['name']}.{cc.NAMESPACE}.svc"
        service = f"http://{host}:{values['service']['port']}"
        # bound to the instance's jurisdictions: its key document speaks for those only
        assert f"{'+'.join(instance['jurisdictions'])}={service}/v1/keys" in key_urls
        for code in instance["jurisdictions"]:
            expected = values["exchange"]["reconciliation"]["registryUrls"].get(code, service)
            assert urls[code] == expected, code


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


# Settings the chart leaves alone (documented in deploy/helm/README.md).
NOT_FROM_THE_CHART = {"CLIENTS_INLINE", "CONSUMER_GROUP", "EVENTS_RECORD_DIR", "KAFKA_GROUP_INSTANCE_ID"}
# Set only with mutual TLS (security protocol SSL), which ci/mtls-values.yaml configures.
MUTUAL_TLS = {"KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"}
# Settings the chart sets only when their value (a Secret, a file, an endpoint) is configured.
ONLY_WHEN_CONFIGURED = {
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "OTEL_ENDPOINT",
    "AGREEMENTS_FILE",
    "REGISTRY_TOKEN",
    "STATUS_LIST_SIGNING_KEY",
    "PUBLIC_URL",
    "EVENT_KEYS_FILE",
}
# Settings only the migrate Job gets: the owner's DSN must never reach a serving pod.
ONLY_IN_MIGRATE_JOBS = {"DATABASE_MIGRATION_URL", "DATABASE_SERVICE_ROLE"}
SETTINGS: dict[str, list[type[BaseSettings]]] = {
    "registry": [RegistrySettings],
    "exchange": [ExchangeSettings],
    "verification": [VerificationSettings],
}


def env_names(*classes: type[BaseSettings]) -> set[str]:
    """The environment variables pydantic-settings reads for these classes."""
    return {
        (str(cls.model_config.get("env_prefix") or "") + name).upper()
        for cls in classes
        for name in cls.model_fields
    }


def pod_env(values_file: str, deployment: dict[str, Any]) -> set[str]:
    """Every variable a Deployment's container gets: its ConfigMap (envFrom) and its env."""
    configs = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(values_file, "ConfigMap")}
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(configs[source["configMapRef"]["name"]])
    return names


@values_files
def test_every_setting_of_the_services_reaches_their_pods(values_file: str) -> None:
    """The chart does not lag behind the settings classes: each setting is set, configurable
    and absent only because it is not configured, or deliberately left alone."""
    readme = (cc.CHART / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in NOT_FROM_THE_CHART)
    for deployment in of_kind(values_file, "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        expected = env_names(*SETTINGS[component.split("-")[0]]) - NOT_FROM_THE_CHART - ONLY_IN_MIGRATE_JOBS
        assert not ONLY_IN_MIGRATE_JOBS & pod_env(values_file, deployment), component
        missing = expected - pod_env(values_file, deployment)
        assert missing <= ONLY_WHEN_CONFIGURED, f"{component}: {sorted(missing)}"
        if values_file == "production-values.yaml":  # configures every optional setting but mTLS
            assert not missing - MUTUAL_TLS, f"{component}: {sorted(missing)}"
        if values_file == "mtls-values.yaml":
            assert not missing & MUTUAL_TLS, f"{component}: {sorted(missing)}"


def test_the_migrate_jobs_alone_get_the_owner_dsn_and_the_service_role() -> None:
    """Production: each migrate Job logs in as the owner and grants the service's own role;
    the serving pods (checked above) get neither."""
    jobs = [j for j in of_kind("production-values.yaml", "Job") if j["metadata"]["name"].endswith("-migrate")]
    assert len(jobs) == 4  # two registries, the exchange, verification
    for job in jobs:
        [container] = job["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_MIGRATION_URL"]["valueFrom"]["secretKeyRef"]["name"].endswith("-owner")
        assert env["DATABASE_SERVICE_ROLE"]["value"].endswith("_svc")


@values_files
def test_settings_values_parse(values_file: str) -> None:
    """The plain values the chart renders are accepted by the settings classes."""
    for deployment in of_kind(values_file, "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = plain_env(values_file, deployment)
        secrets = {e["name"]: "x" * 43 for e in container["env"] if "valueFrom" in e}
        if "STATUS_LIST_SIGNING_KEY" in secrets:  # a real key is needed to parse one
            secrets["STATUS_LIST_SIGNING_KEY"] = "A" * 43
        for cls in SETTINGS[component.split("-")[0]]:
            prefix = str(cls.model_config.get("env_prefix") or "").upper()
            fields = {
                k.removeprefix(prefix).lower(): v
                for k, v in {**env, **secrets}.items()
                if k.startswith(prefix) and k.removeprefix(prefix).lower() in cls.model_fields
            }
            cls.model_validate(fields)


@values_files
def test_the_prometheus_rules_and_the_dashboard_are_the_shipped_ones(values_file: str) -> None:
    deploy = cc.CHART.parent
    for rule in of_kind(values_file, "PrometheusRule"):
        assert rule["spec"] == yaml.safe_load((deploy / "prometheus" / "alerts.yaml").read_text())
    for config in of_kind(values_file, "ConfigMap"):
        if config["metadata"]["labels"]["app.kubernetes.io/component"] == "grafana-dashboard":
            dashboard = (deploy / "grafana" / "migrant-exchange.json").read_text().strip()
            assert config["data"] == {"migrant-exchange.json": dashboard}
    values = merged_values(values_file)["metrics"]
    assert len(of_kind(values_file, "PrometheusRule")) == int(values["prometheusRule"]["enabled"])
    assert cc.check_copies() == []


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
        (
            {"kafka": {"securityProtocol": "SASL_SSL", "users": {"provision": "none"}}},
            "at '/kafka/sasl/username': minLength",
        ),
        ({"exchange": {"replicaCount": 2}}, "additional properties 'replicaCount' not allowed"),
        (
            {"exchange": {"reconciliation": {"intervalSeconds": 3600}}},
            "at '/exchange/reconciliation/tokenSecret/name': minLength",
        ),
        (
            {"exchange": {"agreements": [{"division_a": 320412, "division_b": "*"}]}},
            "at '/exchange/agreements/0/division_a': got number, want string",
        ),
        (
            {
                "exchange": {
                    "agreements": [
                        {
                            "division_a": "320412",
                            "division_b": "440703",
                            "visible_fields": {"vital.birth.v1": ["birth_id"]},
                        }
                    ]
                }
            },
            "at '/exchange/agreements/0/visible_fields/vital.birth.v1': got array, want object",
        ),
        (
            {"verification": {"statusList": {"signingKeySecret": {"value": "abc"}}}},
            "additional properties 'value' not allowed",
        ),
    ],
)
def test_a_wrong_value_fails_with_the_schema_message(overrides: dict[str, Any], message: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError) as refused:
        cc.render(overrides)
    assert message in str(refused.value)


def test_production_refuses_a_status_list_key_outside_a_secret() -> None:
    with pytest.raises(Exception, match="status-list signing key must come from a Secret in production"):
        cc.render({"verification": {"statusList": {"signingKeySecret": {"name": ""}}}})
    cc.render(
        {"environment": "development", "verification": {"statusList": {"signingKeySecret": {"name": ""}}}}
    )


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


def test_agreements_naming_topics_or_misspelt_fields_are_refused_by_chart_check() -> None:
    """What the schema cannot know (the event catalog, the payloads' fields) chart-check checks as
    the services will at start: the production example once keyed agreements by topic names."""
    old_example = {
        "exchange": {
            "agreements": [
                {
                    "division_a": "320481",
                    "division_b": "440703",
                    "event_types": ["vital.migration.v1", "vital.birth.v1"],
                }
            ]
        }
    }
    [problem] = cc.check_agreements(old_example)
    assert "unknown event type 'vital.migration.v1'" in problem
    misspelt = {
        "exchange": {
            "agreements": [
                {
                    "division_a": "320481",
                    "division_b": "440703",
                    "event_types": ["birth.registered.v1"],
                    "visible_fields": {"440703": {"birth.registered.v1": ["birth_date", "place_of_birth"]}},
                }
            ]
        }
    }
    assert "unknown field 'birth_date' of birth.registered.v1" in cc.check_agreements(misspelt)[0]
    for name in sorted(VALUES_FILES):
        assert cc.check_agreements(cc.load_values(VALUES_FILES[name])) == [], name
    # Registries read the same file: a counterpart's read follows the agreement.
    for deployment in of_kind("production-values.yaml", "Deployment"):
        if "verification" in deployment["metadata"]["name"]:
            continue  # verification reads no agreement
        assert "AGREEMENTS_FILE" in pod_env("production-values.yaml", deployment), deployment["metadata"][
            "name"
        ]
