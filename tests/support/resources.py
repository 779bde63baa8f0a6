"""Small readers of what a user would see: resources, their status, their Events."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from kubernetes import client
from kubernetes.client import ApiException

GROUP, VERSION = "backups.cassandra.dev", "v1alpha1"


def rfc3339(instant: datetime) -> str:
    return instant.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def soon(seconds: float) -> datetime:
    """A whole second at least ``seconds`` from now (ticks have seconds precision)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds + 1)).replace(microsecond=0)


def schedule_manifest(name: str, *, cluster: dict[str, Any], first: datetime,
                      interval: int = -1, unit: str | None = None,
                      **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupSchedule",
        "metadata": {"name": name},
        "spec": {"cluster": cluster, "firstRunDate": first.strftime("%Y-%m-%d"),
                 "firstRunTime": first.strftime("%H:%M:%S"), "timezone": "GMT",
                 "interval": interval, "intervalUnit": unit, **spec},
    }


def run_manifest(name: str, *, cluster: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BackupRun",
            "metadata": {"name": name}, "spec": {"cluster": cluster, **spec}}


def create(custom: client.CustomObjectsApi, namespace: str, plural: str,
           body: dict[str, Any]) -> dict[str, Any]:
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    return cast(dict[str, Any], created)


def get(custom: client.CustomObjectsApi, namespace: str, plural: str,
        name: str) -> dict[str, Any] | None:
    try:
        found = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return cast(dict[str, Any], found)


def status(custom: client.CustomObjectsApi, namespace: str, plural: str,
           name: str) -> dict[str, Any]:
    found = get(custom, namespace, plural, name)
    return dict((found or {}).get("status") or {})


def runs(custom: client.CustomObjectsApi, namespace: str,
         selector: str = "") -> list[dict[str, Any]]:
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "backupruns",
                                                   label_selector=selector)
    return cast(list[dict[str, Any]], cast(dict[str, Any], listing)["items"])


def terminal(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    found = status(custom, namespace, "backupruns", name)
    return found if found.get("phase") in ("Succeeded", "PartiallyFailed", "Failed") else {}


def events(core: client.CoreV1Api, namespace: str,
           name: str) -> list[tuple[str | None, str | None]]:
    """(reason, message) of every Event about the object ``name``."""
    listing = core.list_namespaced_event(namespace,
                                         field_selector=f"involvedObject.name={name}")
    return [(event.reason, event.message) for event in listing.items]


def event_messages(core: client.CoreV1Api, namespace: str, name: str, reason: str, *,
                   timeout: float = 20.0) -> list[str]:
    """Messages of the Events with ``reason`` about ``name``, once there is at least one.

    Events are posted in the background after the status they explain is written, so a
    test that has just seen the status waits for the Event too.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [message or "" for seen, message in events(core, namespace, name)
                 if seen == reason]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def condition(found: dict[str, Any], type: str) -> dict[str, Any]:
    for entry in found.get("conditions", []):
        if entry["type"] == type:
            return dict(entry)
    return {}


def make_pod(core: client.CoreV1Api, namespace: str, *, name: str, ip: str,
             ready: bool = True, labels: dict[str, str] | None = None) -> None:
    """A Pod object whose status says it runs at ``ip`` (no kubelet ever runs it)."""
    core.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {"app": "cassandra"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="cassandra",
                                                             image="cassandra:5.0")])))
    status = {"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                        "reason": None if ready else "ContainersNotReady",
                        "message": None if ready else "containers with unready status: "
                                                      "[cassandra]"}]}}
    core.patch_namespaced_pod_status(name, namespace, status)


def sidecar_cluster(*, endpoints: list[str] | None = None, port: int = 19105,
                    token_secret: str = "sidecar-token") -> dict[str, Any]:
    sidecars: dict[str, Any] = {"tokenSecret": {"name": token_secret, "key": "token"},
                                "port": port}
    if endpoints is None:
        sidecars["podSelector"] = {"matchLabels": {"app": "cassandra"}}
    else:
        sidecars["endpoints"] = endpoints
    return {"name": "Test_Cluster", "sidecars": sidecars}
