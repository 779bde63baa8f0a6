"""The sidecar backend as the run fan-out sees it: snapshot and clear, one node at a time.

Secrets are read once per run (the token, and the CA when the sidecars speak TLS);
the token lives only in the client's Authorization header, never in a message.
"""

from __future__ import annotations

import ssl

from cassandra_backup import models
from cassandra_backup.discovery import Node
from cassandra_backup.kube import KubeApi
from cassandra_backup.runs import NodeError, NodeSnapshot
from cassandra_backup.sidecar.client import SidecarClient, SidecarError

# The run deadline bounds a snapshot; this only stops one request from hanging forever.
REQUEST_TIMEOUT = 3600.0


class SidecarSnapshots:
    """Snapshots through each node's sidecar."""

    def __init__(self, *, token: str, verify: ssl.SSLContext | bool) -> None:
        self._token = token
        self._verify = verify

    def _client(self, node: Node) -> SidecarClient:
        return SidecarClient(base_url=node.url, token=self._token, timeout=REQUEST_TIMEOUT,
                             verify=self._verify)

    async def snapshot(self, node: Node, *, tag: str, keyspaces: list[str]) -> NodeSnapshot:
        try:
            async with self._client(node) as client:
                result = await client.take_snapshot(tag=tag, keyspaces=keyspaces)
        except SidecarError as exc:
            raise NodeError(str(exc)) from None
        return NodeSnapshot(size_bytes=result.size_bytes,
                            keyspace_sizes=dict(result.keyspace_sizes))

    async def clear(self, node: Node, *, tag: str) -> bool:
        try:
            async with self._client(node) as client:
                return await client.clear_snapshot(tag)
        except SidecarError as exc:
            raise NodeError(str(exc)) from None


class SidecarTakers:
    """Builds a ``SidecarSnapshots`` for a backend, reading its Secrets."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    async def __call__(self, *, namespace: str,
                       backend: models.SidecarBackend) -> SidecarSnapshots:
        token = await self._api.secret_value(namespace=namespace, name=backend.tokenSecret.name,
                                             key=backend.tokenSecret.key)
        # One TLS context per run, shared by every node's client: building one costs
        # tens of milliseconds of CPU on the event loop. Plain HTTP needs none at all.
        verify: ssl.SSLContext | bool = False
        if backend.caSecret is not None:
            ca = await self._api.secret_value(namespace=namespace, name=backend.caSecret.name,
                                              key=backend.caSecret.key)
            verify = ssl.create_default_context(cadata=ca)
        return SidecarSnapshots(token=token.strip(), verify=verify)
