"""The operator's RBAC is enough for a whole backup cycle, and refuses everything else.

The ServiceAccount and its roles come from what users install (the chart for a namespaced
operator, deploy/ for one watching every namespace). The operator process runs with that
account's own token, obtained through the TokenRequest API, so every call it and kopf
make is authorised by the real API server against those roles: a schedule fires, the run
snapshots a pod's sidecar, Events are posted, status is written, and deleting the run
clears its snapshot through kopf's finalizer. Then the same token is shown to be refused
what the operator has no business doing.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from support.controlplane import REPO_ROOT, ControlPlane
from support.helm import CHART_DIR, helm
from support.kubectl import kubectl, kubectl_binary
from support.processes import Process, Sidecar, operator_process, wait_for
from support.resources import (
    create,
    event_messages,
    get,
    make_pod,
    rfc3339,
    schedule_manifest,
    sidecar_cluster,
    soon,
    status,
    terminal,
)

pytestmark = pytest.mark.integration

SCHEDULES, RUNS = "backupschedules", "backupruns"
ACCOUNT = "backups-cassandra-backup-operator"
RUN_TIMEOUT_SECONDS = 60.0
# Without any cluster-scoped permission, kopf retries its listing of namespaces and CRDs
# (with back-off, for most of a minute) before it falls back to the namespaces it was
# given and starts handling resources.
NAMESPACED_RUN_TIMEOUT_SECONDS = 150.0
# The two cluster-wide listings kopf tries before it settles for the given namespaces.
KOPF_DISCOVERY = ("/api/v1/namespaces", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")


def service_account_kubeconfig(control_plane: ControlPlane, *, account: str,
                               namespace: str) -> Path:
    token = kubectl("create", "token", account, "--namespace", namespace, "--duration=1h",
                    kubeconfig=control_plane.kubeconfig).stdout.strip()
    return control_plane.kubeconfig_for_token(token, name=f"{account}-{namespace}",
                                              namespace=namespace)


def can_i(kubeconfig: Path, *request: str) -> str:
    """`kubectl auth can-i` as the kubeconfig's user: "yes" or "no"."""
    answer = kubectl("auth", "can-i", *request, kubeconfig=kubeconfig, check=False)
    return answer.stdout.strip()


@pytest.fixture
def start_operator_as(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(kubeconfig: Path, namespaces: list[str] | None) -> Process:
        process = operator_process(kubeconfig=kubeconfig, log=tmp_path / "operator.log",
                                   namespaces=namespaces).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def full_cycle(*, custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
               sidecar: Sidecar, operator: Process,
               timeout: float = RUN_TIMEOUT_SECONDS) -> None:
    """A one-time schedule over one pod fires, its run succeeds, and deleting the run
    clears its snapshot: every kind of call the operator makes, under its own token."""
    make_pod(core, namespace, name="cassandra-0", ip=sidecar.host)
    tick = soon(4)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "once", cluster=sidecar_cluster(port=sidecar.port), first=tick,
        jobParams={"keyspaces": ["test"]}))
    run_name = f"once-{tick:%Y%m%d-%H%M}"

    done = wait_for(lambda: terminal(custom, namespace, run_name), timeout=timeout,
                    what=f"run {run_name} to finish")
    assert done["phase"] == "Succeeded", done
    assert [(node["pod"], node["phase"]) for node in done["nodes"]] == [
        ("cassandra-0", "Succeeded")]
    assert sidecar.snapshot_dirs(run_name), "the sidecar holds the run's snapshot"
    last_run = wait_for(lambda: status(custom, namespace, SCHEDULES, "once").get("lastRun"),
                        timeout=RUN_TIMEOUT_SECONDS, what="the schedule's lastRun")
    assert last_run == rfc3339(tick)
    assert f"created BackupRun {run_name} for tick {rfc3339(tick)}" in \
        event_messages(core, namespace, "once", "RunCreated")

    run = get(custom, namespace, RUNS, run_name)
    assert run is not None
    assert run["metadata"].get("finalizers"), "kopf guards a Delete-policy run"
    custom.delete_namespaced_custom_object("backups.cassandra.dev", "v1alpha1", namespace,
                                           RUNS, run_name)
    wait_for(lambda: get(custom, namespace, RUNS, run_name) is None,
             timeout=RUN_TIMEOUT_SECONDS, what=f"run {run_name} to be deleted")
    assert sidecar.snapshot_dirs(run_name) == [], "deleting the run cleared its snapshot"


def refusals(operator: Process, *, account: str, namespace: str) -> list[str]:
    """The operator's log lines that report a request RBAC denied to its account.

    Only RBAC's own wording counts: a cluster-wide operator also meets namespaces that
    other tests left terminating, where admission refuses new Events for other reasons.
    """
    # kopf quotes the API server's message as it is; the kubernetes client's exceptions
    # carry the JSON body, with its quotes escaped.
    denied = re.compile(re.escape(f"system:serviceaccount:{namespace}:{account}") + r'\\?" cannot')
    return [line for line in operator.output().splitlines() if denied.search(line)]


def chart_rbac(tmp_path: Path, *, namespace: str, values: list[str]) -> str:
    set_args = [arg for value in values for arg in ("--set", value)]
    rendered = helm("template", "backups", str(CHART_DIR), "--namespace", namespace,
                    "--show-only", "templates/serviceaccount.yaml",
                    "--show-only", "templates/rbac.yaml", *set_args, home=tmp_path / "helm")
    return rendered.stdout


def test_namespaced_operator_runs_a_full_cycle_on_its_own_token_and_nothing_more(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str,
        tmp_path: Path, custom: client.CustomObjectsApi, core: client.CoreV1Api,
        token_secret: str, sidecars: Callable[..., Sidecar],
        start_operator_as: Callable[..., Process]) -> None:
    admin = control_plane.kubeconfig
    rbac = chart_rbac(tmp_path, namespace=namespace, values=[
        f"watchNamespaces={{{namespace}}}", f"rbac.secretNames={{{token_secret}}}"])
    kubectl("apply", "-f", "-", input=rbac, kubeconfig=admin)
    kubectl("create", "secret", "generic", "unrelated", "--from-literal=password=hunter2",
            "--namespace", namespace, kubeconfig=admin)
    operator_kubeconfig = service_account_kubeconfig(control_plane, account=ACCOUNT,
                                                     namespace=namespace)
    sidecar = sidecars()

    operator = start_operator_as(operator_kubeconfig, [namespace])
    full_cycle(custom=custom, core=core, namespace=namespace, sidecar=sidecar,
               operator=operator, timeout=NAMESPACED_RUN_TIMEOUT_SECONDS)

    unexpected = [line for line in refusals(operator, account=ACCOUNT, namespace=namespace)
                  if not any(f"{path} " in line or f"{path}?" in line for path in KOPF_DISCOVERY)]
    assert unexpected == [], "nothing but kopf's cluster-wide discovery is refused"

    def allowed(*request: str) -> str:
        return can_i(operator_kubeconfig, *request)

    assert allowed("get", f"secret/{token_secret}", "-n", namespace) == "yes"
    assert allowed("patch", "backupschedules.backups.cassandra.dev/status", "-n",
                   namespace) == "yes"
    assert allowed("get", "secret/unrelated", "-n", namespace) == "no"
    assert allowed("list", "secrets", "-n", namespace) == "no"
    assert allowed("get", f"secret/{token_secret}", "-n", "default") == "no"
    assert allowed("list", "backupschedules.backups.cassandra.dev", "-n", "default") == "no"
    assert allowed("list", "pods", "-n", "kube-system") == "no"
    assert allowed("create", "namespaces") == "no"
    assert allowed("create", "clusterroles.rbac.authorization.k8s.io") == "no"
    assert allowed("create", "customresourcedefinitions.apiextensions.k8s.io") == "no"
    assert allowed("delete", "pods", "-n", namespace) == "no"
    assert allowed("create", "pods/exec", "-n", namespace) == "no"
    assert allowed("patch", "deployments.apps", "-n", namespace) == "no"
    assert allowed("update", "deployments.apps", "-n", namespace) == "no"
    assert allowed("delete", "backupschedules.backups.cassandra.dev", "-n", namespace) == "no"

    read_other = kubectl("get", "secret", "unrelated", "--namespace", namespace,
                         kubeconfig=operator_kubeconfig, check=False)
    assert read_other.returncode != 0
    assert f"system:serviceaccount:{namespace}:{ACCOUNT}" in read_other.stderr
    assert "hunter2" not in read_other.stdout + read_other.stderr


def cluster_wide_rbac(namespace: str) -> list[dict[str, Any]]:
    """deploy/'s ServiceAccount, ClusterRole and binding, moved to `namespace` and given
    names of their own, so that tests never share a cluster-scoped object."""
    built = subprocess.run([str(kubectl_binary()), "kustomize", str(REPO_ROOT / "deploy")],
                           capture_output=True, text=True, check=True)
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    documents = [doc for doc in yaml.safe_load_all(built.stdout)
                 if doc and doc["kind"] in wanted]
    assert sorted(doc["kind"] for doc in documents) == sorted(wanted)
    unique = f"cassandra-backup-operator-{namespace}"
    for doc in documents:
        if doc["kind"] == "ServiceAccount":
            doc["metadata"]["namespace"] = namespace
        else:
            doc["metadata"]["name"] = unique
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = unique
            for subject in doc["subjects"]:
                subject["namespace"] = namespace
    return documents


@pytest.fixture
def cluster_wide_account(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    documents = cluster_wide_rbac(namespace)
    manifest = yaml.safe_dump_all(documents)
    kubectl("apply", "-f", "-", input=manifest, kubeconfig=control_plane.kubeconfig)
    (account,) = [doc["metadata"]["name"] for doc in documents
                  if doc["kind"] == "ServiceAccount"]
    yield account
    kubectl("delete", "clusterrolebinding,clusterrole", f"cassandra-backup-operator-{namespace}",
            "--ignore-not-found", kubeconfig=control_plane.kubeconfig)


def test_cluster_wide_operator_runs_a_full_cycle_on_its_own_token_and_nothing_more(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str,
        custom: client.CustomObjectsApi, core: client.CoreV1Api, token_secret: str,
        sidecars: Callable[..., Sidecar], cluster_wide_account: str,
        start_operator_as: Callable[..., Process]) -> None:
    operator_kubeconfig = service_account_kubeconfig(
        control_plane, account=cluster_wide_account, namespace=namespace)
    sidecar = sidecars()

    operator = start_operator_as(operator_kubeconfig, None)
    full_cycle(custom=custom, core=core, namespace=namespace, sidecar=sidecar,
               operator=operator)

    assert refusals(operator, account=cluster_wide_account, namespace=namespace) == []

    def allowed(*request: str) -> str:
        return can_i(operator_kubeconfig, *request)

    assert allowed("get", "secrets", "-n", "default") == "yes"
    assert allowed("watch", "backupruns.backups.cassandra.dev", "--all-namespaces") == "yes"
    assert allowed("list", "secrets", "--all-namespaces") == "no"
    assert allowed("watch", "secrets", "-n", namespace) == "no"
    assert allowed("create", "secrets", "-n", namespace) == "no"
    assert allowed("create", "namespaces") == "no"
    assert allowed("create", "clusterrolebindings.rbac.authorization.k8s.io") == "no"
    assert allowed("create", "customresourcedefinitions.apiextensions.k8s.io") == "no"
    assert allowed("delete", "customresourcedefinitions.apiextensions.k8s.io") == "no"
    assert allowed("delete", "pods", "-n", namespace) == "no"
    assert allowed("patch", "deployments.apps", "-n", namespace) == "no"
    assert allowed("update", "deployments.apps", "-n", "kube-system") == "no"
    assert allowed("create", "serviceaccounts/token", "-n", namespace) == "no"
    assert allowed("delete", "backupschedules.backups.cassandra.dev", "-n", namespace) == "no"
