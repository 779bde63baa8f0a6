"""Fixtures for the operator on the real control plane, with sidecars as real processes.

The integration and end-to-end tiers both import these into their conftest.

Pods never run without a kubelet, so a "Cassandra pod" here is a Pod object whose
status the test patches: its podIP is a loopback address where a real sidecar process
listens, and its Ready condition says what the test wants it to say.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.controlplane import ControlPlane
from support.processes import Process, Sidecar, fake_sidecar, operator_process, wait_healthy

TOKEN = "integration-sidecar-token-7f3a"
_hosts = itertools.count(20)


@pytest.fixture
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@pytest.fixture
def core(kube_api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


@pytest.fixture
def token_secret(core: client.CoreV1Api, namespace: str) -> str:
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="sidecar-token"), string_data={"token": TOKEN}))
    return "sidecar-token"


@pytest.fixture
def start_operator(control_plane: ControlPlane, crds_installed: list[str], namespace: str,
                   tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Starts the operator (watching this test's namespace); stopped after the test."""
    started: list[Process] = []

    def start(**kwargs: Any) -> Process:
        process = operator_process(kubeconfig=control_plane.kubeconfig,
                                   log=tmp_path / "operator.log", namespaces=[namespace],
                                   **kwargs).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def operator(start_operator: Callable[..., Process]) -> Process:
    return start_operator()


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    """Starts real sidecar processes on distinct loopback addresses, one shared port."""
    started: list[Sidecar] = []

    def start(port: int = 19105, **kwargs: Any) -> Sidecar:
        host = f"127.0.0.{next(_hosts) % 250 + 2}"
        sidecar = fake_sidecar(workdir=tmp_path / f"sidecar-{host}", host=host, port=port,
                               token=TOKEN, **kwargs)
        sidecar.process.start()
        started.append(sidecar)
        wait_healthy(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.process.stop(timeout=5)
