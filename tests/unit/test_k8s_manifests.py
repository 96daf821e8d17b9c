"""The Kubernetes manifests in deploy/k8s agree with the code: every service deployed safely, configured only with
settings it has, given only placeholder secrets, and scaled on the consumer groups and topics it really reads; and the
production ACLs and database roles grant each service what its code really uses."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
from prometheus_client import REGISTRY

from deploy.local import SERVICES
from deploy.production import render
from deploy.production.render import SERVICE_READS, SERVICE_WRITES, template_of
from services.hub.api import REFERRALS_IN
from services.reporting.storage import FACT_TABLES
from shared.agencies import AGENCIES
from shared.messaging.topics import TOPICS, agency_of
from shared.settings import ServiceSettings

yaml = pytest.importorskip("yaml", reason="PyYAML is not in uv.lock yet")

# Where the metrics the alerts read are declared (importing registers them).
for module in ("shared.messaging.consumer", "shared.messaging.outbox", "services.hub.watchdog"):
    importlib.import_module(module)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ROLES_SQL = ROOT / "deploy" / "production" / "postgres-roles.sql"
PLACEHOLDER = "REPLACE_ME"
# Kafka client security settings every service reads (shared/settings.py), allowed by name.
KAFKA_SECURITY = {
    "CTP_KAFKA_SECURITY_PROTOCOL",
    "CTP_KAFKA_SASL_MECHANISM",
    "CTP_KAFKA_SASL_USERNAME",
    "CTP_KAFKA_SASL_PASSWORD",
    "CTP_KAFKA_SSL_CAFILE",
}
# Variables read outside the settings classes: the bootstrap alias, OpenTelemetry, logging, asyncpg's TLS.
OTHER_ENV = {"KAFKA_BOOTSTRAP", "LOG_LEVEL", "PGSSLMODE", "PGSSLROOTCERT", "PGTARGETSESSIONATTRS"}
# Config values that name a file the containers must find mounted from a Secret.
FILE_SETTINGS = ("CTP_KAFKA_SSL_CAFILE", "CTP_AUTH_PUBLIC_KEY_FILE", "PGSSLROOTCERT")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in documents(path):
            if "kind" in doc and doc["kind"] != "Kustomization":
                yield path, doc


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def settings_class(service: str) -> type[ServiceSettings]:
    cls: type[ServiceSettings] = importlib.import_module(f"services.{service}.app").Settings
    return cls


def ctp_names(cls: type[ServiceSettings]) -> set[str]:
    """The CTP_* variables a settings class reads (a field with its own alias is not read under CTP_)."""
    return {f"CTP_{name.upper()}" for name, field in cls.model_fields.items() if field.validation_alias is None}


class _Captured(Exception):
    def __init__(self, subscriptions: list[Any]) -> None:
        self.subscriptions = subscriptions


def subscriptions(service: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Consumer group -> topics, as the service's create_app declares them, without building or starting anything."""
    app = importlib.import_module(f"services.{service}.app")

    def capture(settings: ServiceSettings, *, subscriptions: Any = (), **_: Any) -> Any:
        raise _Captured(list(subscriptions))

    monkeypatch.setattr(app, "create_service", capture)
    with pytest.raises(_Captured) as caught:
        app.create_app()
    return {f"{service}.{s.consumer}": set(s.topics) for s in caught.value.subscriptions}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, deployment in of_kind("Deployment").items():
        yield name, deployment["spec"]["template"]["spec"]
    for name, job in of_kind("Job").items():
        yield name, job["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def config() -> dict[str, str]:
    data: dict[str, str] = of_kind("ConfigMap")["ctp-config"]["data"]
    return data


def secret_template() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents(K8S / "secrets.template.yaml")}


def test_every_service_has_a_deployment_service_budget_and_scaled_object() -> None:
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ScaledObject"):
        assert set(of_kind(kind)) == set(SERVICES), kind


def test_the_base_kustomization_deploys_every_service_but_no_secret_job_or_simulator() -> None:
    (base,) = documents(K8S / "kustomization.yaml")
    resources = set(base["resources"])
    assert {f"services/{s}.yaml" for s in SERVICES} | {f"keda/{s}.yaml" for s in SERVICES} <= resources
    assert not any("secret" in r or "migrate" in r or "optional" in r for r in resources)
    commands = [" ".join(c.get("command", [])) for _, pod in pod_specs() for c in containers(pod)]
    assert commands and not any("contactcentre_simulator" in c for c in commands)


def test_probes_point_at_the_health_endpoints_on_the_container_port() -> None:
    for service, deployment in of_kind("Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        port = settings_class(service)().http_port
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert {e["name"]: e.get("value") for e in container["env"]}["CTP_HTTP_PORT"] == str(port)
        assert container["command"] == ["python", "-m", f"services.{service}"]
        paths = {"livenessProbe": "/health/live", "readinessProbe": "/health/serving", "startupProbe": "/health/live"}
        for probe, path in paths.items():
            assert container[probe]["httpGet"]["path"] == path, (service, probe)
            assert container[probe]["httpGet"]["port"] in ("http", port), (service, probe)


def test_containers_run_as_non_root_with_a_read_only_root_filesystem() -> None:
    for name, pod in pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(pod):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert container["resources"]["limits"]["memory"], (name, container["name"])


def test_every_secret_value_is_a_placeholder_and_no_secret_is_in_the_applied_manifests() -> None:
    template = secret_template()
    assert template
    for name, secret in template.items():
        assert "data" not in secret, name
        for key, value in secret["stringData"].items():
            if key == "username":  # the principal acls.yaml grants to, not a secret
                assert value == f"svc.{name.removesuffix('-kafka')}", name
            else:
                assert PLACEHOLDER in value, (name, key)
    applied = [path for path, doc in manifests() if doc["kind"] == "Secret" and path.name != "secrets.template.yaml"]
    assert applied == []


def test_every_secret_and_mounted_file_the_pods_use_is_in_the_template() -> None:
    template = secret_template()
    used: set[tuple[str, str]] = set()
    for name, pod in pod_specs():
        secret_volumes = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for container in containers(pod):
            for env in container.get("env", []):
                if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                    used.add((ref["name"], ref["key"]))
            mounts = {m["mountPath"]: secret_volumes.get(m["name"]) for m in container.get("volumeMounts", [])}
            configured = {"configMapRef": {"name": "ctp-config"}} in container.get("envFrom", [])
            wanted = () if not configured else FILE_SETTINGS if name in SERVICES else ("PGSSLROOTCERT",)
            for setting in wanted:
                path = PurePosixPath(config()[setting])
                secret = mounts.get(str(path.parent))
                assert secret is not None, (name, container["name"], setting)
                used.add((secret, path.name))
    for auth in of_kind("TriggerAuthentication").values():
        used |= {(ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    missing = {(name, key) for name, key in used if key not in template.get(name, {}).get("stringData", {})}
    assert missing == set()


def test_every_ctp_setting_the_manifests_set_is_a_real_setting() -> None:
    shared = ctp_names(ServiceSettings) | KAFKA_SECURITY
    for key in config():
        assert key in shared or key in OTHER_ENV or key.startswith("OTEL_"), key
    for name, pod in pod_specs():
        for container in containers(pod):
            service = name if name in SERVICES else container["name"]
            known = ctp_names(settings_class(service)) | KAFKA_SECURITY if service in SERVICES else shared
            for env in container.get("env", []):
                if env["name"].startswith("CTP_"):
                    assert env["name"] in known, (name, container["name"], env["name"])


def test_production_config_never_trusts_the_development_issuer() -> None:
    assert config()["CTP_AUTH_ISSUER"] != ServiceSettings().auth_issuer
    assert config()["CTP_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config()["PGSSLMODE"] == "verify-full"


def scaled_on(group: str, topics: set[str]) -> set[tuple[str, str | None]]:
    """The (group, topic) of each KEDA trigger a consumer group needs. A group that reads every agency's topics gets one
    trigger without a topic, which KEDA reads as the summed lag of all the group's topics: one trigger per agency would
    need editing for each new agency, and the autoscaler takes the largest trigger, never the sum."""
    if any(agency_of(topic) for topic in topics):
        return {(group, None)}
    return {(group, topic) for topic in topics}


def test_keda_scales_each_consumer_group_on_the_topics_it_subscribes_to(monkeypatch: pytest.MonkeyPatch) -> None:
    scaled, auths = of_kind("ScaledObject"), of_kind("TriggerAuthentication")
    hpas = {doc["metadata"]["name"]: doc for doc in documents(K8S / "optional" / "hpa-prometheus-adapter.yaml")}
    for service in SERVICES:
        groups = subscriptions(service, monkeypatch)
        triggers = [t for t in scaled[service]["spec"]["triggers"] if t["type"] == "kafka"]
        assert {(t["metadata"]["consumerGroup"], t["metadata"].get("topic")) for t in triggers} == {
            trigger for group, topics in groups.items() for trigger in scaled_on(group, topics)
        }, service
        for trigger in triggers:
            auth = auths[trigger["authenticationRef"]["name"]]
            assert {ref["name"] for ref in auth["spec"]["secretTargetRef"]} == {f"{service}-kafka", "ctp-kafka-ca"}
        selectors = {
            m["external"]["metric"]["selector"]["matchLabels"]["consumer"]
            for m in hpas[service]["spec"]["metrics"]
            if m["type"] == "External"
        }
        assert selectors == set(groups), service


def test_replicas_never_exceed_the_partitions_of_the_topics_they_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group's members share the partitions of all its topics (aiokafka assigns round-robin across them), so a
    replica beyond the group's partitions would hold none."""
    partitions = {name: t.partitions for t in TOPICS for name in t.names()}
    hpas = {doc["metadata"]["name"]: doc for doc in documents(K8S / "optional" / "hpa-prometheus-adapter.yaml")}
    for service, scaled in of_kind("ScaledObject").items():
        groups = subscriptions(service, monkeypatch)
        fewest = min(
            sum(partitions[t] for t in groups[trigger["metadata"]["consumerGroup"]])
            if "topic" not in trigger["metadata"]
            else partitions[trigger["metadata"]["topic"]]
            for trigger in scaled["spec"]["triggers"]
            if trigger["type"] == "kafka"
        )
        assert 2 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= fewest, service
        assert hpas[service]["spec"]["maxReplicas"] <= fewest, service


def test_the_migration_job_migrates_every_service_in_turn_as_its_owner() -> None:
    (job,) = of_kind("Job").values()
    steps = job["spec"]["template"]["spec"]["initContainers"]
    assert [s["name"] for s in steps] == list(SERVICES)
    for step in steps:
        assert step["command"][-1] == step["name"]
        assert "shared.migrations import upgrade" in step["command"][2]
        (url,) = [e for e in step["env"] if e["name"] == "CTP_DATABASE_URL"]
        assert url["valueFrom"]["secretKeyRef"]["name"] == f"{step['name']}-database-owner"


def test_alerts_name_only_metrics_the_code_exports() -> None:
    exported: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        exported |= {family.name + suffix for suffix in suffixes}
    (rule,) = of_kind("PrometheusRule").values()
    used = {
        name
        for group in rule["spec"]["groups"]
        for alert in group["rules"]
        for name in re.findall(r"\bctp_[a-z_]+", alert["expr"])
    }
    assert {"ctp_consumer_lag_messages", "ctp_messages_dead_lettered_total", "ctp_escalation_steps_overdue"} <= used
    assert used - exported == set()


def test_the_production_acls_grant_each_service_what_it_really_consumes(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in SERVICES:
        # Each agency's topic (agency.health-nz.referrals.in) is granted once for all, as its template.
        consumed = {template_of(t) for topics in subscriptions(service, monkeypatch).values() for t in topics}
        assert consumed == set(SERVICE_READS[service]), service


def test_the_hub_may_write_the_referrals_it_makes_of_concerns() -> None:
    assert REFERRALS_IN in SERVICE_WRITES["hub"]
    assert ("WRITE", REFERRALS_IN) in {
        (operation, grant.name)
        for grant in render.acls(["health-nz"])
        if grant.principal == "User:svc.hub"
        for operation in grant.operations
    }
    # Its topics are created even when only other agencies are connected, and no outside system may act as the hub.
    assert agency_of(REFERRALS_IN) in render.platform_agencies()
    assert not any(grant.principal == f"User:agency.{agency_of(REFERRALS_IN)}" for grant in render.acls(AGENCIES))


def test_the_production_definitions_cover_every_service() -> None:
    assert set(render.SERVICES) == set(SERVICES)
    assert set(SERVICE_READS) == set(render.SERVICE_WRITES) == set(SERVICES)
    roles = ROLES_SQL.read_text()
    for service in SERVICES:
        assert f"CREATE SCHEMA {service} AUTHORIZATION {service}_owner;" in roles, service
        assert re.search(rf"^CREATE ROLE {service}\s+LOGIN", roles, re.MULTILINE), service
        assert re.search(rf"^CREATE ROLE {service}_owner\s+LOGIN", roles, re.MULTILINE), service


def test_only_reporting_may_empty_tables_and_only_what_its_rebuild_empties() -> None:
    """Default privileges give every runtime role SELECT, INSERT, UPDATE; the rebuild's TRUNCATE of the fact tables
    and DELETE of its inbox are granted by name (the grant, in a comment, is run after the migrations)."""
    lines = (line.removeprefix("--").strip() for line in ROLES_SQL.read_text().splitlines())
    statements = [" ".join(statement.split()) for statement in " ".join(lines).split(";")]
    defaults: dict[str, str] = {}
    emptying: dict[str, set[str]] = {}
    for statement in statements:
        if found := re.search(
            r"ALTER DEFAULT PRIVILEGES FOR ROLE \w+ IN SCHEMA \w+ GRANT ([A-Z, ]+) ON TABLES TO (\w+)$", statement
        ):
            defaults[found[2]] = found[1]
        elif found := re.search(r"\bGRANT ([A-Z, ]+) ON ([\w., ]+) TO (\w+)$", statement):
            rights = {right.strip().removesuffix(" PRIVILEGES") for right in found[1].split(",")}
            if rights & {"DELETE", "TRUNCATE", "ALL"}:
                assert found[3] == "reporting" and rights in ({"DELETE"}, {"TRUNCATE"}), statement
                tables = {table.strip().removeprefix("reporting.") for table in found[2].split(",")}
                emptying.setdefault(rights.pop(), set()).update(tables)
    assert defaults == {service: "SELECT, INSERT, UPDATE" for service in SERVICES}
    assert emptying == {"TRUNCATE": {table.name for table in FACT_TABLES}, "DELETE": {"inbox"}}


# The custom resources of KEDA and the Prometheus Operator: no schema ships with Kubernetes; the tests above read them.
CUSTOM_KINDS = {"ScaledObject", "TriggerAuthentication", "PrometheusRule", "ServiceMonitor"}
KUBERNETES_VERSION = "1.33.0"  # the oldest minor version still in upstream support when this was written


def test_every_manifest_is_valid_kubernetes_with_no_unknown_fields() -> None:
    """Against the API's own OpenAPI schemas (kubernetes-validate), strictly: a misspelt or misplaced field fails here
    rather than being dropped by the API server."""
    checked, custom = 0, set()
    for path, doc in manifests():
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.add(doc["kind"])
            continue
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.relative_to(ROOT)}: {doc['kind']} {doc['metadata']['name']}: {error.message}")
        checked += 1
    assert custom == CUSTOM_KINDS
    assert checked >= 6 * 5  # each service's Deployment, Service, PodDisruptionBudget, Secret and optional HPA at least
