"""Kafka transport of the chart (issue 16, point 8): TLS only outside development, a principal per
service, and KafkaUser ACLs equal to what each service's code reads, writes and consumes as.

What the services consume is read from their own consumer factories, so a consumer that starts
reading another topic fails here until its ACL follows.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from services.migrant_exchange.entrypoints.consumer import consumers as exchange_consumers
from services.migrant_exchange.settings import ExchangeSettings
from services.registry.entrypoints.consumer import consumers as registry_consumers
from services.registry.settings import RegistrySettings
from services.verification.entrypoints.consumer import consumers as verification_consumers
from services.verification.settings import VerificationSettings
from shared.consumer import EventConsumer
from shared.events.catalog import CATALOG, DLQ_SUFFIX, spec_for
from shared.kafka import INCARNATION_PREFIX, all_topics

helm_python = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (Helm's Go library) is not installed"
)

CHECK_CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "check_chart.py"
_spec = importlib.util.spec_from_file_location("check_chart_kafka", CHECK_CHART)
assert _spec and _spec.loader
cc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cc)
CI = cc.CHART / "ci"

# Every service publishes the head of its audit chain where there is such a topic (issue 16, point 7).
AUDIT = {t for t in all_topics() if t.startswith("audit.checkpoint.")}
DISCLOSURES = spec_for("disclosure.recorded.v1").topic
# Who produces which event types (DESIGN.md section 4); the exchange also relays the feedback a
# REST-only jurisdiction posts; every discloser reports its disclosures (registries: their reads).
PRODUCED = {
    "registry": {s.topic for t, s in CATALOG.items() if not t.startswith("exchange.")}
    | {"exchange.feedback.v1"}
    | AUDIT,
    "exchange": {"exchange.notification.v1", "exchange.feedback.v1", DISCLOSURES} | AUDIT,
    "verification": {DISCLOSURES} | AUDIT,  # the certificate checks it reports (issue 17)
}


def _consumers(component: str, jurisdictions: list[str]) -> list[EventConsumer]:
    if component == "registry":
        return registry_consumers(None, RegistrySettings(jurisdictions=",".join(jurisdictions)))  # type: ignore[arg-type]
    if component == "exchange":
        return exchange_consumers(None, ExchangeSettings())  # type: ignore[arg-type]
    return verification_consumers(None, VerificationSettings())  # type: ignore[arg-type]


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for _, doc in cc.render(values)]


def _values(name: str) -> dict[str, Any]:
    return cc.load_values(cc.CHART / "values.yaml" if name == "values.yaml" else CI / name)


def _env(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, Any]:
    """A Deployment container's environment: its ConfigMap's values and its env entries."""
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    configs = {c["metadata"]["name"]: c.get("data", {}) for c in docs if c["kind"] == "ConfigMap"}
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env |= configs[source["configMapRef"]["name"]]
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", e.get("valueFrom"))
    return env


def _acls(user: dict[str, Any]) -> dict[tuple[str, str, str], set[str]]:
    return {
        (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"]): set(a["operations"])
        for a in user["spec"]["authorization"]["acls"]
    }


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_clear_text_kafka_is_refused_outside_development(environment: str, protocol: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        cc.render({"environment": environment, "kafka": {"securityProtocol": protocol}})
    assert "at '/kafka/securityProtocol': value must be one of 'SSL', 'SASL_SSL'" in str(refused.value)


def test_development_may_use_plaintext_and_then_has_no_principals() -> None:
    docs = _render(_values("development-values.yaml"))
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert deployments and {_env(docs, d)["KAFKA_SECURITY_PROTOCOL"] for d in deployments} == {"PLAINTEXT"}
    assert not [d for d in docs if d["kind"] == "KafkaUser"]


@pytest.mark.parametrize("values_file", ["values.yaml", "production-values.yaml", "mtls-values.yaml"])
def test_every_service_has_a_principal_of_its_own_with_exactly_the_acls_it_needs(values_file: str) -> None:
    values = _values(values_file)
    docs = _render(values)
    users = {u["metadata"]["name"]: u for u in docs if u["kind"] == "KafkaUser"}
    protocol = values.get("kafka", {}).get("securityProtocol", "SASL_SSL")
    instances = {
        i["name"]: i["jurisdictions"]
        for i in values.get("registry", {}).get("instances", [{"name": "main", "jurisdictions": ["320412"]}])
    }
    principals = []
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        env = _env(docs, deployment)
        pod = deployment["spec"]["template"]["spec"]
        if protocol == "SSL":
            [client] = [v for v in pod["volumes"] if v["name"] == "kafka-client"]
            principal = client["secret"]["secretName"]
            assert {i["key"] for i in client["secret"]["items"]} == {"user.crt", "user.key"}
            assert env["KAFKA_SSL_CERTFILE"] == "/etc/migrant-exchange/kafka-client/user.crt"
            assert env["KAFKA_SSL_KEYFILE"] == "/etc/migrant-exchange/kafka-client/user.key"
            assert users[principal]["spec"]["authentication"] == {"type": "tls"}
        else:
            principal = env["KAFKA_SASL_USERNAME"]
            assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
            assert env["KAFKA_SASL_PASSWORD"]["secretKeyRef"]["name"]
            assert users[principal]["spec"]["authentication"] == {"type": "scram-sha-512"}
        principals.append(principal)
        kind = component.split("-")[0]
        consumers = _consumers(kind, instances.get(component.removeprefix("registry-"), []))
        reads = {t for c in consumers for t in c.topics}
        acls = _acls(users[principal])
        granted = {
            op: {name for (kind_, name, _), ops in acls.items() if kind_ == "topic" and op in ops}
            for op in ("Read", "Write", "Create", "Describe")
        }
        assert granted["Read"] == reads, component
        # A dead letter of what it reads; the exchange's census reads dead letters and makes none.
        dead = {t + DLQ_SUFFIX for t in reads if not t.endswith(DLQ_SUFFIX)}
        assert granted["Write"] == PRODUCED[kind] | dead, component
        assert granted["Create"] == {INCARNATION_PREFIX}, component
        assert granted["Describe"] == set(all_topics()) | {INCARNATION_PREFIX}, component
        groups = [
            (name, pattern)
            for (kind_, name, pattern), ops in acls.items()
            if kind_ == "group" and "Read" in ops
        ]
        for c in consumers:  # each consumer group is granted, literally or by a prefix of the service's own
            assert any(c.name == n if p == "literal" else c.name.startswith(n) for n, p in groups), (
                component,
                c.name,
            )
        assert len(groups) == len({c.name for c in consumers}), (component, groups)
        assert not [k for k in acls if k[1] in ("*", "") or k[0] == "cluster"], component
    assert len(principals) == len(set(principals)) == len(instances) + 2
    assert set(principals) <= set(users)


def test_a_registry_cannot_read_another_principal_s_topics_or_speak_as_the_exchange() -> None:
    """The far side of the table above, spelled out for the confidentiality the issue is about."""
    docs = _render({})
    users = {
        u["metadata"]["labels"]["app.kubernetes.io/component"]: _acls(u)
        for u in docs
        if u["kind"] == "KafkaUser"
    }
    registry = users["registry-main"]
    assert "Write" not in registry[("topic", "exchange.notification.v1", "literal")]
    assert "Read" not in registry[("topic", "vital.pregnancy.v1", "literal")]
    assert "Read" not in users["verification"][("topic", "exchange.notification.v1", "literal")]
    assert "Read" not in users["exchange"][("topic", "exchange.notification.v1", "literal")]
    assert users["topics"][("topic", "vital.pregnancy.v1", "literal")] == {"Create", "Describe"}


def test_two_services_cannot_share_a_principal() -> None:
    with pytest.raises(helm_python.HelmError) as refused:
        cc.render({"kafka": {"sasl": {"username": "everyone"}}})
    assert 'share the Kafka principal "everyone"' in str(refused.value)


def test_strimzi_users_are_scram_sha_512_and_no_users_leaves_the_identity_to_you() -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        cc.render({"kafka": {"sasl": {"mechanism": "SCRAM-SHA-256"}}})
    assert "at '/kafka/sasl/mechanism': value must be 'SCRAM-SHA-512'" in str(refused.value)
    unmanaged = {
        "kafka": {
            "users": {"provision": "none"},
            "sasl": {
                "username": "topics-admin",
                "passwordSecret": {"name": "topics-admin", "key": "password"},
            },
        },
        "registry": {"kafkaSasl": {"username": "reg"}},
        "exchange": {"kafkaSasl": {"username": "hub"}},
        "verification": {"kafkaSasl": {"username": "verify"}},
    }
    docs = _render(unmanaged)
    assert not [d for d in docs if d["kind"] == "KafkaUser"]
    names = {_env(docs, d)["KAFKA_SASL_USERNAME"] for d in docs if d["kind"] == "Deployment"}
    assert names == {"reg", "hub", "verify"}
