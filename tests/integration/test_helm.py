"""The Helm chart: it lints clean, renders what each values choice promises, and installs
and uninstalls on the real control plane.

Nothing runs the operator's pod here (there is no kubelet); what is checked is the set of
objects that Helm writes and removes, and what the API server accepts. Uninstalling must
leave the CRDs, and with them every BackupSchedule and BackupRun, in place.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controlplane import REPO_ROOT, ControlPlane
from support.helm import CHART_DIR, helm
from support.kubectl import kubectl
from support.resources import schedule_manifest, sidecar_cluster, soon

CRD_DIR = REPO_ROOT / "crds"
DEPLOY_CLUSTER_ROLE = REPO_ROOT / "deploy" / "clusterrole.yaml"
GONE_TIMEOUT_SECONDS = 60.0


def render(tmp_path: Path, *values: str, namespace: str = "backups") -> list[dict[str, Any]]:
    """`helm template` with `--set` values, parsed into its documents."""
    set_args = [arg for value in values for arg in ("--set", value)]
    rendered = helm("template", "backups", str(CHART_DIR), "--namespace", namespace,
                    *set_args, home=tmp_path / "helm")
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def operator_args(documents: list[dict[str, Any]]) -> list[str]:
    (deployment,) = by_kind(documents, "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


@pytest.mark.parametrize("values", [
    [],
    ["watchNamespaces={cassandra}", "logFormat=text"],
    ["watchNamespaces={cassandra,analytics}", "rbac.secretNames={backup-sidecar-token}",
     "metrics.serviceMonitor.enabled=true"],
    ["metrics.enabled=false", "serviceAccount.create=false", "serviceAccount.name=ops"],
], ids=["defaults", "one-namespace", "several-namespaces", "no-metrics"])
def test_chart_lints_clean_in_strict_mode(tmp_path: Path, values: list[str]) -> None:
    set_args = [arg for value in values for arg in ("--set", value)]

    linted = helm("lint", "--strict", str(CHART_DIR), *set_args, home=tmp_path, check=False)

    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout
    assert "[WARNING]" not in linted.stdout
    assert "[ERROR]" not in linted.stdout


def test_chart_crds_are_byte_identical_to_the_generated_crds() -> None:
    generated = {path.name: path.read_bytes() for path in CRD_DIR.glob("*.yaml")}
    shipped = {path.name: path.read_bytes() for path in (CHART_DIR / "crds").iterdir()}

    assert generated, "crds/ holds no CRDs"
    assert shipped == generated, (
        "helm/cassandra-backup-operator/crds/ differs from crds/: copy crds/*.yaml there")


@pytest.mark.parametrize(("value", "field"), [
    ("logFormat=xml", "logFormat"),
    ("watchNamespaces={Cassandra}", "watchNamespaces"),
    ("metrics.port=70000", "metrics.port"),
    ("image.pullPolicy=Sometimes", "image.pullPolicy"),
    ("replicas=2", "replicas"),
])
def test_invalid_values_are_refused_naming_the_field(tmp_path: Path, value: str,
                                                      field: str) -> None:
    rendered = helm("template", "backups", str(CHART_DIR), "--set", value, home=tmp_path,
                    check=False)

    assert rendered.returncode != 0
    assert "values don't meet the specifications of the schema" in rendered.stderr
    assert field.split(".")[-1] in rendered.stderr


def test_watching_all_namespaces_binds_a_cluster_role(tmp_path: Path) -> None:
    documents = render(tmp_path)

    assert by_kind(documents, "Role") == []
    (role,) = by_kind(documents, "ClusterRole")
    (binding,) = by_kind(documents, "ClusterRoleBinding")
    (account,) = by_kind(documents, "ServiceAccount")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": account["metadata"]["name"],
                                    "namespace": "backups"}]
    assert "--namespace" not in operator_args(documents)


def test_cluster_role_grants_what_the_kustomize_cluster_role_grants(tmp_path: Path) -> None:
    (chart_role,) = by_kind(render(tmp_path), "ClusterRole")
    deploy_role = yaml.safe_load(DEPLOY_CLUSTER_ROLE.read_text())

    assert chart_role["rules"] == deploy_role["rules"]


def test_watching_several_namespaces_gives_a_role_and_binding_in_each(tmp_path: Path) -> None:
    documents = render(tmp_path, "watchNamespaces={cassandra,analytics}")

    assert by_kind(documents, "ClusterRole") == []
    assert by_kind(documents, "ClusterRoleBinding") == []
    roles = {doc["metadata"]["namespace"]: doc for doc in by_kind(documents, "Role")}
    bindings = {doc["metadata"]["namespace"]: doc for doc in by_kind(documents, "RoleBinding")}
    assert set(roles) == set(bindings) == {"cassandra", "analytics"}
    for binding in bindings.values():
        assert binding["subjects"][0]["namespace"] == "backups"
    args = operator_args(documents)
    assert args[args.index("--namespace"):] == [
        "--namespace", "cassandra", "--namespace", "analytics"]


def test_secret_names_restrict_which_secrets_the_operator_may_read(tmp_path: Path) -> None:
    documents = render(tmp_path, "watchNamespaces={cassandra}",
                       "rbac.secretNames={backup-sidecar-token,opscenter-login}")

    (role,) = by_kind(documents, "Role")
    secret_rules = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
    assert secret_rules == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                             "resourceNames": ["backup-sidecar-token", "opscenter-login"]}]


def test_deployment_is_one_hardened_replica_with_a_liveness_probe(tmp_path: Path) -> None:
    documents = render(tmp_path, "image.repository=registry.local/cbo", "image.tag=1.2.3")

    (deployment,) = by_kind(documents, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert container["image"] == "registry.local/cbo:1.2.3"
    assert container["args"][:5] == [
        "run", "--log-format", "json", "--liveness", "http://0.0.0.0:8080/healthz"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080} in container["ports"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}


def test_metrics_off_serves_no_metrics_port_and_no_service(tmp_path: Path) -> None:
    documents = render(tmp_path, "metrics.enabled=false")

    args = operator_args(documents)
    assert args[args.index("--metrics-port") + 1] == "0"
    assert by_kind(documents, "Service") == []


def test_service_monitor_scrapes_the_metrics_service(tmp_path: Path) -> None:
    documents = render(tmp_path, "metrics.serviceMonitor.enabled=true",
                       "metrics.serviceMonitor.labels.release=prometheus")

    (monitor,) = by_kind(documents, "ServiceMonitor")
    (service,) = by_kind(documents, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090,
                                         "targetPort": "metrics"}]


@pytest.mark.integration
@pytest.mark.parametrize("watch", ["all", "this-and-default"])
def test_rendered_chart_is_accepted_by_the_api_server(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str,
        tmp_path: Path, watch: str) -> None:
    values = [] if watch == "all" else ["--set", f"watchNamespaces={{{namespace},default}}"]
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted",
            kubeconfig=control_plane.kubeconfig)
    rendered = helm("template", "backups", str(CHART_DIR), "--namespace", namespace,
                    "--include-crds", *values, home=tmp_path / "helm")

    applied = kubectl("apply", "--dry-run=server", "-f", "-", "-o", "name",
                      kubeconfig=control_plane.kubeconfig, input=rendered.stdout, check=False)

    assert applied.returncode == 0, applied.stderr
    assert "PodSecurity" not in applied.stderr, "the operator pod meets the restricted level"
    names = set(applied.stdout.split())
    assert "deployment.apps/backups-cassandra-backup-operator" in names
    assert "customresourcedefinition.apiextensions.k8s.io/backupschedules.backups.cassandra.dev" \
        in names
    role_kind = "clusterrole" if watch == "all" else "role"
    assert f"{role_kind}.rbac.authorization.k8s.io/backups-cassandra-backup-operator" in names


def _names(kind: str, *, kubeconfig: Path, namespace: str | None = None,
           selector: str = "app.kubernetes.io/instance=backups") -> set[str]:
    scope = ["--namespace", namespace] if namespace else []
    listed = kubectl("get", kind, *scope, "-l", selector, "-o", "name", kubeconfig=kubeconfig)
    return set(listed.stdout.split())


def _wait_until_gone(kind: str, *, kubeconfig: Path, namespace: str | None = None) -> set[str]:
    deadline = time.monotonic() + GONE_TIMEOUT_SECONDS
    while (left := _names(kind, kubeconfig=kubeconfig, namespace=namespace)) and \
            time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.integration
@pytest.mark.parametrize("watch", ["this-namespace", "all"])
def test_install_creates_the_objects_and_uninstall_removes_them_but_keeps_the_crs(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str,
        tmp_path: Path, watch: str) -> None:
    kubeconfig = control_plane.kubeconfig
    home = tmp_path / "helm"
    values = ["--set", f"watchNamespaces={{{namespace}}}"] if watch == "this-namespace" else []
    schedule = schedule_manifest("kept", cluster=sidecar_cluster(endpoints=["127.0.0.1:1"]),
                                 first=soon(3600), interval=1, unit="days")
    kubectl("apply", "--namespace", namespace, "-f", "-", input=yaml.safe_dump(schedule),
            kubeconfig=kubeconfig)

    installed = helm("install", "backups", str(CHART_DIR), "--namespace", namespace, *values,
                     home=home, kubeconfig=kubeconfig)

    assert "STATUS: deployed" in installed.stdout
    assert f"It watches {'the namespace ' + namespace if watch != 'all' else 'every namespace'}" \
        in installed.stdout
    named = "backups-cassandra-backup-operator"
    assert _names("deployment", kubeconfig=kubeconfig, namespace=namespace) == {
        f"deployment.apps/{named}"}
    assert _names("serviceaccount", kubeconfig=kubeconfig, namespace=namespace) == {
        f"serviceaccount/{named}"}
    assert _names("service", kubeconfig=kubeconfig, namespace=namespace) == {
        f"service/{named}-metrics"}
    rbac_kinds: list[tuple[str, str | None]]
    if watch == "all":
        rbac_kinds = [("clusterrole", None), ("clusterrolebinding", None)]
    else:
        rbac_kinds = [("role", namespace), ("rolebinding", namespace)]
    for kind, scope in rbac_kinds:
        assert _names(kind, kubeconfig=kubeconfig, namespace=scope) == {
            f"{kind}.rbac.authorization.k8s.io/{named}"}
    listed = helm("list", "--namespace", namespace, "-o", "json", home=home,
                  kubeconfig=kubeconfig)
    assert [(r["name"], r["status"]) for r in yaml.safe_load(listed.stdout)] == [
        ("backups", "deployed")]

    helm("uninstall", "backups", "--namespace", namespace, home=home, kubeconfig=kubeconfig)

    for kind, scope in [("deployment", namespace), ("serviceaccount", namespace),
                        ("service", namespace), *rbac_kinds]:
        assert _wait_until_gone(kind, kubeconfig=kubeconfig, namespace=scope) == set(), kind
    crds = kubectl("get", "customresourcedefinitions", "-o", "name", kubeconfig=kubeconfig)
    assert {f"customresourcedefinition.apiextensions.k8s.io/{name}"
            for name in crds_installed} <= set(crds.stdout.split())
    kept = kubectl("get", "backupschedules", "--namespace", namespace, "-o", "name",
                   kubeconfig=kubeconfig)
    assert kept.stdout.split() == ["backupschedule.backups.cassandra.dev/kept"]
