"""Which nodes a run covers: pods matched by a selector, or a fixed endpoint list.

A pod that matches but is not Ready is still a node of the cluster: it becomes a
failed node with that reason, so a run never silently covers fewer nodes than exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from cassandra_backup import models
from cassandra_backup.kube import KubeApi, Pod


@dataclass(frozen=True)
class Node:
    """One Cassandra node and the sidecar beside it."""

    address: str
    url: str
    pod: str | None = None
    unavailable: str | None = None   # why the node cannot be asked, if it cannot


def selector_string(selector: models.LabelSelector) -> str:
    """A label selector in the list API's query syntax."""
    parts = [f"{key}={value}" for key, value in sorted(selector.matchLabels.items())]
    for expression in selector.matchExpressions:
        values = ",".join(expression.values)
        match expression.operator:
            case "In":
                parts.append(f"{expression.key} in ({values})")
            case "NotIn":
                parts.append(f"{expression.key} notin ({values})")
            case "Exists":
                parts.append(expression.key)
            case "DoesNotExist":
                parts.append(f"!{expression.key}")
    return ",".join(parts)


def _scheme(backend: models.SidecarBackend) -> str:
    return "https" if backend.caSecret is not None else "http"


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def nodes_from_pods(pods: list[Pod], backend: models.SidecarBackend) -> list[Node]:
    nodes = []
    for pod in sorted(pods, key=lambda p: p.name):
        address = pod.ip or pod.name
        url = f"{_scheme(backend)}://{_host_for_url(address)}:{backend.port}"
        nodes.append(Node(address=address, url=url, pod=pod.name,
                          unavailable=None if pod.ready else pod.reason))
    return nodes


def nodes_from_endpoints(backend: models.SidecarBackend) -> list[Node]:
    nodes = []
    for endpoint in backend.endpoints:
        host, _, _port = endpoint.rpartition(":")
        nodes.append(Node(address=host.strip("[]"), url=f"{_scheme(backend)}://{endpoint}"))
    return nodes


async def discover_nodes(api: KubeApi, *, namespace: str,
                         backend: models.SidecarBackend) -> list[Node]:
    if backend.podSelector is None:
        return nodes_from_endpoints(backend)
    pods = await api.list_pods(namespace=namespace,
                               selector=selector_string(backend.podSelector))
    return nodes_from_pods(pods, backend)
