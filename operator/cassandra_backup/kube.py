"""The few Kubernetes API calls the operator makes, as async methods.

The official ``kubernetes`` client is synchronous; each call runs in a worker thread so
the event loop that drives kopf and the node fan-out never blocks. Status is written
with JSON merge patches on the ``status`` subresource only: the operator never writes
a user's spec, labels or annotations.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from cassandra_backup import models

SCHEDULES = "backupschedules"
RUNS = "backupruns"


class EventSink(Protocol):
    """Where decisions are reported as Kubernetes Events (kopf posts them)."""

    def info(self, body: Mapping[str, Any], *, reason: str, message: str) -> None: ...

    def warning(self, body: Mapping[str, Any], *, reason: str, message: str) -> None: ...


class SecretMissing(Exception):
    """A Secret, or a key in it, that a resource names is not there."""

    def __init__(self, *, namespace: str, name: str, key: str | None = None) -> None:
        self.namespace, self.name, self.key = namespace, name, key
        where = f"Secret {namespace}/{name}"
        super().__init__(f"{where} has no key {key!r}" if key else f"{where} not found")


@dataclass(frozen=True)
class Pod:
    """What the operator needs to know of a Cassandra pod."""

    name: str
    ip: str | None
    ready: bool
    reason: str | None


def load_config() -> client.ApiClient:
    """An API client from the in-cluster service account or the local kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class KubeApi:
    """Async wrapper of the synchronous client, one method per call the operator makes."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    async def secret_data(self, *, namespace: str, name: str) -> dict[str, str]:
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretMissing(namespace=namespace, name=name) from None
            raise
        data = secret.data or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    async def secret_value(self, *, namespace: str, name: str, key: str) -> str:
        data = await self.secret_data(namespace=namespace, name=name)
        if key not in data:
            raise SecretMissing(namespace=namespace, name=name, key=key)
        return data[key]

    async def list_pods(self, *, namespace: str, selector: str) -> list[Pod]:
        pods = await asyncio.to_thread(
            self._core.list_namespaced_pod, namespace, label_selector=selector)
        return [_pod(item) for item in pods.items]

    async def list_runs(self, *, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        listing = await asyncio.to_thread(
            self._custom.list_namespaced_custom_object, models.GROUP, models.VERSION,
            namespace, RUNS, label_selector=selector)
        items: list[dict[str, Any]] = cast(dict[str, Any], listing).get("items", [])
        return items

    async def get_schedule(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(SCHEDULES, namespace=namespace, name=name)

    async def get_run(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(RUNS, namespace=namespace, name=name)

    async def _get(self, plural: str, *, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = await asyncio.to_thread(
                self._custom.get_namespaced_custom_object, models.GROUP, models.VERSION,
                namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], found)

    async def create_run(self, *, namespace: str, body: dict[str, Any]) -> bool:
        """Create a run; False when one of that name exists already (the tick is done)."""
        try:
            await asyncio.to_thread(
                self._custom.create_namespaced_custom_object, models.GROUP, models.VERSION,
                namespace, RUNS, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def delete_run(self, *, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(
                self._custom.delete_namespaced_custom_object, models.GROUP, models.VERSION,
                namespace, RUNS, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def patch_run_labels(self, *, namespace: str, name: str,
                               labels: dict[str, str]) -> None:
        """Add labels to a run the operator itself created (never to a user's run)."""
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object, models.GROUP, models.VERSION,
            namespace, RUNS, name, {"metadata": {"labels": labels}})

    async def patch_status(self, *, plural: str, namespace: str, name: str,
                           status: dict[str, Any]) -> None:
        """Merge-patch the status subresource; a vanished object is not an error."""
        try:
            await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status, models.GROUP,
                models.VERSION, namespace, plural, name, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                raise


def _pod(item: Any) -> Pod:
    conditions = (item.status.conditions or []) if item.status else []
    ready = next((c for c in conditions if c.type == "Ready"), None)
    ip = item.status.pod_ip if item.status else None
    is_ready = ready is not None and ready.status == "True"
    reason = None
    if not is_ready:
        detail = (ready.message or ready.reason) if ready is not None else None
        reason = f"pod {item.metadata.name} is not Ready" + (f": {detail}" if detail else "")
    elif not ip:
        reason = f"pod {item.metadata.name} has no IP address yet"
    return Pod(name=item.metadata.name, ip=ip, ready=is_ready and bool(ip), reason=reason)
