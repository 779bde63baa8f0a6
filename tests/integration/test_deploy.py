"""What deploy/ and examples/gitops give a user: manifests the API server accepts, an
operator Deployment wired to the command's own defaults, the metrics a Prometheus scrape
sees, and BackupSchedules a GitOps tool keeps in sync without ever seeing drift.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiException
from prometheus_client.parser import text_string_to_metric_families

from cassandra_backup.cli import build_parser
from cassandra_backup.sidecar.server import build_parser as sidecar_parser
from support.controlplane import REPO_ROOT, ControlPlane
from support.kubectl import kubectl, kubectl_binary
from support.processes import Process, Sidecar, free_port, wait_for
from support.resources import (
    condition,
    create,
    get,
    schedule_manifest,
    sidecar_cluster,
    soon,
    terminal,
)

DEPLOY = REPO_ROOT / "deploy"
GITOPS_FOLDER = REPO_ROOT / "examples" / "gitops" / "backups"
CRD_DIR = REPO_ROOT / "crds"
SCHEDULES = "backupschedules"
FIELD_MANAGER = "gitops-example"
RUN_TIMEOUT_SECONDS = 60.0


def build(folder: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of a folder, parsed into its documents."""
    built = subprocess.run([str(kubectl_binary()), "kustomize", str(folder)],
                           capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents if doc["kind"] == kind]
    return found


def test_kustomize_crds_are_byte_identical_to_the_generated_crds() -> None:
    generated = {path.name: path.read_bytes() for path in CRD_DIR.glob("*.yaml")}
    shipped = {path.name: path.read_bytes() for path in (DEPLOY / "crds").glob("*.yaml")
               if path.name != "kustomization.yaml"}

    assert generated, "crds/ holds no CRDs"
    assert shipped == generated, "deploy/crds/ differs from crds/: copy crds/*.yaml there"


def test_deployment_runs_the_command_with_its_own_liveness_and_metrics_defaults() -> None:
    documents = build(DEPLOY)
    defaults = build_parser().parse_args(["run"])
    deployment = one(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert container["args"] == ["run", "--log-format", "json"]
    assert container["image"] == "cassandra-backup-operator:0.1.0"
    assert defaults.liveness == f"http://0.0.0.0:{ports['health']}/healthz"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert defaults.metrics_port == ports["metrics"]
    assert pod["serviceAccountName"] == one(documents, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}
    assert set(container["resources"]) == {"requests", "limits"}


def test_metrics_service_selects_the_operator_pod_on_its_metrics_port() -> None:
    documents = build(DEPLOY)
    service = one(documents, "Service")
    template_labels = one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]

    assert service["spec"]["selector"].items() <= template_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090,
                                         "targetPort": "metrics"}]


def test_namespaced_variant_has_no_cluster_scoped_rbac_and_watches_one_namespace() -> None:
    documents = build(DEPLOY / "namespaced")
    cluster_role = yaml.safe_load((DEPLOY / "clusterrole.yaml").read_text())
    kinds = sorted(doc["kind"] for doc in documents)
    role = one(documents, "Role")
    binding = one(documents, "RoleBinding")
    args = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]

    assert "ClusterRole" not in kinds
    assert "ClusterRoleBinding" not in kinds
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "cassandra"
    assert binding["subjects"] == [{"kind": "ServiceAccount",
                                    "name": "cassandra-backup-operator",
                                    "namespace": "cassandra-backup-system"}]
    assert role["rules"] == [rule for rule in cluster_role["rules"]
                             if rule["apiGroups"] != ["apiextensions.k8s.io"]]
    assert args == ["run", "--log-format", "json", "--namespace", "cassandra"]


@pytest.fixture
def namespaces_present(core: client.CoreV1Api) -> Iterator[Callable[[str], None]]:
    """Makes namespaces exist for the test, labelled as deploy/ labels them; removes the
    ones it created."""
    created: list[str] = []
    labels = {doc["metadata"]["name"]: doc["metadata"].get("labels") or {}
              for doc in build(DEPLOY) if doc["kind"] == "Namespace"}

    def ensure(name: str) -> None:
        metadata = client.V1ObjectMeta(name=name, labels=labels.get(name))
        try:
            core.create_namespace(client.V1Namespace(metadata=metadata))
        except ApiException as error:
            if error.status != 409:
                raise
            return
        created.append(name)

    yield ensure
    for name in created:
        core.delete_namespace(name)
    # The next test may want the same namespace, which cannot be made while it terminates.
    def all_gone() -> bool:
        present = {ns.metadata.name for ns in core.list_namespace().items if ns.metadata}
        return not present & set(created)

    wait_for(all_gone, timeout=RUN_TIMEOUT_SECONDS, what=f"namespaces {created} to go")


@pytest.mark.integration
@pytest.mark.parametrize(("folder", "needs"), [
    ("deploy", ["cassandra-backup-system"]),
    ("deploy/namespaced", ["cassandra-backup-system", "cassandra"]),
])
def test_kustomize_folder_is_accepted_by_the_api_server(
        control_plane: ControlPlane, crds_installed: list[str],
        namespaces_present: Callable[[str], None], folder: str, needs: list[str]) -> None:
    # A server-side dry run creates nothing, its namespace included, so the namespaces the
    # objects go into must be there already.
    for name in needs:
        namespaces_present(name)

    applied = kubectl("apply", "-k", str(REPO_ROOT / folder), "--dry-run=server",
                      kubeconfig=control_plane.kubeconfig, check=False)

    assert applied.returncode == 0, applied.stderr
    assert "PodSecurity" not in applied.stderr, "the operator pod meets the restricted level"
    lines = applied.stdout.splitlines()
    assert all(line.endswith("(server dry run)") for line in lines), lines
    assert any(line.startswith("deployment.apps/cassandra-backup-operator") for line in lines)
    assert any(line.startswith("service/cassandra-backup-operator-metrics") for line in lines)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """The operator's /metrics as {(sample name, schedule label): value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0, trust_env=False).text
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, sample.labels.get("schedule", ""))] = sample.value
    return samples


def rfc3339_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.integration
def test_metrics_count_a_success_and_a_partial_failure_per_schedule(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        start_operator: Callable[..., Process], sidecars: Callable[..., Sidecar]) -> None:
    port = free_port()
    start_operator(metrics_port=port)
    good, also_good = sidecars(), sidecars()
    failing = sidecars(nodetool_env={"FAKE_NODETOOL_FAIL": "error: disk /data is full"})
    tick = soon(4)
    for name, nodes in [("steady", [good]), ("shaky", [also_good, failing])]:
        create(custom, namespace, SCHEDULES, schedule_manifest(
            name, cluster=sidecar_cluster(endpoints=[node.endpoint for node in nodes]),
            first=tick))
    stamp = f"{tick:%Y%m%d-%H%M}"

    steady = wait_for(lambda: terminal(custom, namespace, f"steady-{stamp}"),
                      timeout=RUN_TIMEOUT_SECONDS, what="the steady run")
    shaky = wait_for(lambda: terminal(custom, namespace, f"shaky-{stamp}"),
                     timeout=RUN_TIMEOUT_SECONDS, what="the shaky run")
    assert (steady["phase"], shaky["phase"]) == ("Succeeded", "PartiallyFailed")

    def both_runs_counted() -> dict[tuple[str, str], float] | None:
        found = scrape(port)
        counted = [("cassandra_backup_run_duration_seconds_count", name) in found
                   for name in ("steady", "shaky")]
        return found if all(counted) else None

    metrics = wait_for(both_runs_counted, timeout=RUN_TIMEOUT_SECONDS,
                       what="both runs in /metrics")

    assert metrics[("cassandra_backup_run_attempts_total", "steady")] == 1
    assert metrics[("cassandra_backup_run_successes_total", "steady")] == 1
    assert ("cassandra_backup_run_failures_total", "steady") not in metrics
    assert metrics[("cassandra_backup_run_attempts_total", "shaky")] == 1
    assert metrics[("cassandra_backup_run_partial_failures_total", "shaky")] == 1
    assert metrics[("cassandra_backup_run_failures_total", "shaky")] == 1
    assert ("cassandra_backup_run_successes_total", "shaky") not in metrics
    assert metrics[("cassandra_backup_run_duration_seconds_count", "steady")] == 1
    last_success = metrics[("cassandra_backup_last_success_timestamp_seconds", "steady")]
    assert abs(last_success - rfc3339_seconds(steady["completionTime"])) < 1.0
    assert ("cassandra_backup_last_success_timestamp_seconds", "shaky") not in metrics


def _settled(custom: client.CustomObjectsApi, namespace: str, names: list[str]) -> bool:
    """Every schedule is Ready with a next run, and nothing has changed it for 2 s."""
    def versions() -> list[str] | None:
        found = [get(custom, namespace, SCHEDULES, name) for name in names]
        if any(item is None for item in found):
            return None
        states = [dict(item.get("status") or {}) for item in found if item is not None]
        if not all(condition(state, "Ready").get("status") == "True" and state.get("nextRun")
                   for state in states):
            return None
        return [item["metadata"]["resourceVersion"] for item in found if item is not None]

    before = versions()
    time.sleep(2)
    return before is not None and versions() == before


@pytest.mark.integration
def test_gitops_folder_applied_server_side_shows_no_drift_once_reconciled(
        control_plane: ControlPlane, custom: client.CustomObjectsApi, core: client.CoreV1Api,
        namespace: str, operator: Process, tmp_path: Path) -> None:
    admin = control_plane.kubeconfig
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="backup-sidecar-token"),
        string_data={"token": "gitops-token"}))
    names = sorted(yaml.safe_load(path.read_text())["metadata"]["name"]
                   for path in GITOPS_FOLDER.glob("*.yaml"))

    kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--namespace",
            namespace, "-f", str(GITOPS_FOLDER), kubeconfig=admin)
    wait_for(lambda: _settled(custom, namespace, names), timeout=RUN_TIMEOUT_SECONDS,
             what="the operator to reconcile the GitOps schedules")
    diff = kubectl("diff", "--server-side", f"--field-manager={FIELD_MANAGER}", "--namespace",
                   namespace, "-f", str(GITOPS_FOLDER), kubeconfig=admin, check=False)

    assert names == ["nightly", "weekly-app"]
    assert (diff.returncode, diff.stdout, diff.stderr) == (0, "", "")
    for path in GITOPS_FOLDER.glob("*.yaml"):
        written = yaml.safe_load(path.read_text())["metadata"]
        live = get(custom, namespace, SCHEDULES, written["name"])
        assert live is not None
        assert live["metadata"].get("labels") == written.get("labels")
        assert "annotations" not in live["metadata"], "no bookkeeping in annotations"

    edited = tmp_path / "backups"
    shutil.copytree(GITOPS_FOLDER, edited)
    nightly = edited / "nightly.yaml"
    nightly.write_text(nightly.read_text().replace('"01:30:00"', '"02:45:00"'))
    changed = kubectl("diff", "--server-side", f"--field-manager={FIELD_MANAGER}",
                      "--namespace", namespace, "-f", str(edited), kubeconfig=admin,
                      check=False)
    assert changed.returncode == 1, changed.stderr
    assert "+  firstRunTime: \"02:45:00\"" in changed.stdout or \
        "+  firstRunTime: 02:45:00" in changed.stdout


SIDECAR_EXAMPLES = REPO_ROOT / "examples" / "sidecar"


def documents_of(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("manifest", ["statefulset.yaml", "cassandradatacenter.yaml"])
def test_sidecar_examples_pass_arguments_the_sidecar_accepts_on_the_port_schedules_call(
        manifest: str) -> None:
    documents = documents_of(SIDECAR_EXAMPLES / manifest)
    workload = next(doc for doc in documents if doc["kind"] != "BackupSchedule"
                    and doc["kind"] != "Service")
    pod = (workload["spec"].get("template") or workload["spec"]["podTemplateSpec"])["spec"]
    (sidecar,) = [c for c in pod["containers"] if c["name"] == "backup-sidecar"]
    schedule = one(documents, "BackupSchedule")

    parsed = sidecar_parser().parse_args(sidecar["args"])

    assert parsed.port == sidecar["ports"][0]["containerPort"]
    assert parsed.port == schedule["spec"]["cluster"]["sidecars"]["port"]
    assert str(parsed.token_file.parent) in {m["mountPath"] for m in sidecar["volumeMounts"]}
    data_mount = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == "/var/lib/cassandra")
    assert data_mount["readOnly"] is True
    assert [str(path) for path in parsed.data_dirs] == ["/var/lib/cassandra/data"]


@pytest.mark.integration
def test_sidecar_statefulset_example_is_accepted_by_the_api_server(
        control_plane: ControlPlane, crds_installed: list[str],
        namespaces_present: Callable[[str], None]) -> None:
    namespaces_present("cassandra")
    # cass-operator's CRD is not installed here; its BackupSchedule is checked alone.
    datacenter_schedule = one(documents_of(SIDECAR_EXAMPLES / "cassandradatacenter.yaml"),
                              "BackupSchedule")

    applied = kubectl("apply", "--dry-run=server", "-o", "name",
                      "-f", str(SIDECAR_EXAMPLES / "token-secret.yaml"),
                      "-f", str(SIDECAR_EXAMPLES / "statefulset.yaml"), "-f", "-",
                      input=yaml.safe_dump(datacenter_schedule),
                      kubeconfig=control_plane.kubeconfig, check=False)

    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.split() == [
        "secret/backup-sidecar-token", "service/cassandra", "statefulset.apps/cassandra",
        "backupschedule.backups.cassandra.dev/nightly",
        "backupschedule.backups.cassandra.dev/dc1-nightly"]


def test_gitops_examples_point_at_the_folder_of_schedules() -> None:
    (application,) = documents_of(REPO_ROOT / "examples" / "gitops" / "argocd-application.yaml")
    flux = documents_of(REPO_ROOT / "examples" / "gitops" / "flux-kustomization.yaml")
    kustomization = one(flux, "Kustomization")
    repository = one(flux, "GitRepository")

    assert REPO_ROOT / application["spec"]["source"]["path"] == GITOPS_FOLDER
    assert "ServerSideApply=true" in application["spec"]["syncPolicy"]["syncOptions"]
    assert (REPO_ROOT / kustomization["spec"]["path"]).resolve() == GITOPS_FOLDER
    assert kustomization["spec"]["sourceRef"] == {"kind": "GitRepository",
                                                  "name": repository["metadata"]["name"]}
    assert application["spec"]["destination"]["namespace"] == \
        kustomization["spec"]["targetNamespace"] == "cassandra"
    for path in GITOPS_FOLDER.glob("*.yaml"):
        assert "namespace" not in yaml.safe_load(path.read_text())["metadata"], (
            f"{path.name} leaves the namespace to the GitOps tool")
