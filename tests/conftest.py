"""Fixtures shared by every test tier: the control plane, API clients, namespaces, CRDs.

One control plane serves the whole session, with kube-controller-manager beside the API
server, because namespace deletion, garbage collection and ServiceAccount tokens are part
of the behaviour under test. Each test gets its own namespace, so tests stay independent
without paying for a fresh cluster.

Building the binaries takes minutes the first time, longer than any single test may run.
So when the selected tests need the control plane, the binaries are located (and built if
need be) once collection is done, before the first test and outside its timeout. A failure
there fails every test that needs the control plane, with the build's own words; nothing is
skipped, so a CI run without the binaries goes red rather than quietly green.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlparse

import pytest
from kubernetes import client, config
from kubernetes.client import ApiException

from support.controlplane import ControlPlane, ControlPlaneError, Progress, find_binaries
from support.kubectl import KubectlError, kubectl

CRD_DIR = Path(__file__).resolve().parent.parent / "crds"
ESTABLISHED_TIMEOUT = "60s"
DEFAULT_ACCOUNT_TIMEOUT_SECONDS = 30.0

_BINARIES_ERROR = pytest.StashKey[str]()


def _terminal_progress(pytest_config: pytest.Config) -> Progress:
    """Print progress lines past pytest's output capture, so a long build shows it is alive."""
    capture = pytest_config.pluginmanager.getplugin("capturemanager")

    def show(line: str) -> None:
        if capture is None:
            print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            print(line, file=sys.stderr, flush=True)

    return show


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or os.environ.get("KUBECONFIG"):
        return
    needs_control_plane = any(
        item.get_closest_marker("integration") is not None
        or "control_plane" in getattr(item, "fixturenames", ())
        for item in session.items
    )
    if not needs_control_plane:
        return
    try:
        find_binaries(controller_manager=True, progress=_terminal_progress(session.config))
    except ControlPlaneError as error:
        session.config.stash[_BINARIES_ERROR] = str(error)


@pytest.fixture(scope="session")
def control_plane(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager on loopback for the whole session
    (or the existing cluster KUBECONFIG names)."""
    build_error = pytestconfig.stash.get(_BINARIES_ERROR, None)
    if build_error is not None:
        pytest.fail(
            f"the control-plane binaries could not be obtained: {build_error}", pytrace=False
        )

    workdir = tmp_path_factory.mktemp("control-plane")
    try:
        plane = ControlPlane.start(
            workdir=workdir, controller_manager=True, progress=_terminal_progress(pytestconfig)
        )
    except ControlPlaneError as error:
        pytest.fail(f"the control plane did not start: {error}", pytrace=False)

    with plane:
        yield plane


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """A Kubernetes API client with the admin credentials of the control plane."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(control_plane.kubeconfig), persist_config=False
    )
    if _is_loopback(control_plane.server):
        # A proxy from the environment must never see traffic meant for a local server.
        api.configuration.proxy = None
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _is_loopback(server: str) -> bool:
    host = urlparse(server).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace named after the test, with its default ServiceAccount in place;
    deleted afterwards."""
    core = client.CoreV1Api(kube_api)
    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    created = core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(generate_name=f"{prefix or 'test'}-"))
    )
    assert created.metadata is not None and created.metadata.name is not None
    name = created.metadata.name
    try:
        _wait_for_default_service_account(core, name)
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


def _wait_for_default_service_account(core: client.CoreV1Api, namespace: str) -> None:
    # Pods are refused by admission until kube-controller-manager has made this account.
    deadline = time.monotonic() + DEFAULT_ACCOUNT_TIMEOUT_SECONDS
    while True:
        try:
            core.read_namespaced_service_account("default", namespace)
            return
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


@pytest.fixture(scope="session")
def crds_installed(control_plane: ControlPlane) -> list[str]:
    """Apply every CRD manifest in crds/ and wait until each is Established; returns the
    CRD names (empty while the folder holds no manifests)."""
    manifests = sorted(path for path in CRD_DIR.glob("*") if path.suffix in {".yaml", ".yml"})
    if not manifests:
        return []

    # Server-side apply: a CRD's schema can outgrow the annotation client-side apply keeps.
    file_args = [arg for path in manifests for arg in ("-f", str(path))]
    try:
        applied = kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-o",
            "name",
            *file_args,
            kubeconfig=control_plane.kubeconfig,
        )
    except KubectlError as error:
        pytest.fail(f"the API server rejected the CRDs in {CRD_DIR}: {error.stderr}", pytrace=False)
    crds = [
        line.strip()
        for line in applied.stdout.splitlines()
        if line.startswith("customresourcedefinition.")
    ]
    if crds:
        kubectl(
            "wait",
            "--for=condition=Established",
            f"--timeout={ESTABLISHED_TIMEOUT}",
            *crds,
            kubeconfig=control_plane.kubeconfig,
        )
    return [crd.split("/", 1)[1] for crd in crds]
