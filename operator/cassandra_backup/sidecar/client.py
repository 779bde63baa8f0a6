"""Async client of one node's snapshot sidecar, for the operator's fan-out over nodes.

Every failure becomes a `SidecarError` whose text a person can act on: it names the
node's URL, what was asked, and the sidecar's own error text, so the message can go
straight into a BackupRun's node status. The bearer token lives only in the request
headers and appears in no message.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Self, TypeVar

import httpx
from pydantic import ValidationError

from cassandra_backup.sidecar.api import (
    READYZ_PATH,
    SNAPSHOTS_PATH,
    SnapshotInfo,
    SnapshotList,
    SnapshotResult,
    snapshot_tag_adapter,
)

_Answer = TypeVar("_Answer", SnapshotResult, SnapshotList)


class SidecarError(Exception):
    """A sidecar request that did not succeed; `status` is None when no answer came."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


class SidecarClient:
    """Talks to the sidecar at `base_url` (for example `http://10.0.0.5:9105`).

    `verify` is True (system CAs), False (no check), a CA bundle's path, or a context.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        timeout: float = 30.0,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def take_snapshot(self, *, tag: str, keyspaces: Sequence[str]) -> SnapshotResult:
        """Take (or find again) snapshot `tag` of `keyspaces`; empty means every keyspace."""
        response = await self._send(
            "POST", SNAPSHOTS_PATH, json={"tag": tag, "keyspaces": list(keyspaces)}
        )
        if response.status_code not in (200, 201):
            raise self._error_from(response, f"snapshot {tag!r}")
        return self._parse(response, SnapshotResult)

    async def list_snapshots(self) -> list[SnapshotInfo]:
        response = await self._send("GET", SNAPSHOTS_PATH)
        if response.status_code != 200:
            raise self._error_from(response, "the snapshot listing")
        return self._parse(response, SnapshotList).snapshots

    async def clear_snapshot(self, tag: str) -> bool:
        """Clear `tag` on the node: True if it was cleared, False if the node had no such tag."""
        # The tag becomes part of the URL path, where '..' or '/' would name another path.
        try:
            snapshot_tag_adapter.validate_python(tag)
        except ValidationError:
            raise SidecarError(
                None,
                f"not clearing snapshot {tag!r} at sidecar {self.base_url}: it is not a valid "
                "snapshot tag",
            ) from None
        response = await self._send("DELETE", f"{SNAPSHOTS_PATH}/{tag}")
        if response.status_code == 404:
            return False
        if response.status_code != 204:
            raise self._error_from(response, f"clearing snapshot {tag!r}")
        return True

    async def ready(self) -> bool:
        """Whether the sidecar's nodetool reaches Cassandra (its /readyz)."""
        response = await self._send("GET", READYZ_PATH)
        if response.status_code == 200:
            return True
        if response.status_code == 503:
            return False
        raise self._error_from(response, "the readiness check")

    async def _send(self, method: str, path: str, *, json: object | None = None) -> httpx.Response:
        try:
            return await self._http.request(method, path, json=json)
        except httpx.TimeoutException:
            raise SidecarError(
                None,
                f"sidecar at {self.base_url} did not answer {method} {path} within "
                f"{self._timeout:g} s",
            ) from None
        except httpx.HTTPError as exc:
            raise SidecarError(
                None,
                f"cannot reach sidecar at {self.base_url} for {method} {path}: "
                f"{exc or type(exc).__name__}",
            ) from None

    def _error_from(self, response: httpx.Response, what: str) -> SidecarError:
        status = response.status_code
        detail = _error_text(response)
        node = f"sidecar at {self.base_url}"
        if status == 401:
            message = (
                f"{node} refused the bearer token for {what} (HTTP 401): check that the "
                "operator's token Secret holds the token the sidecar was started with"
            )
        elif status == 503:
            message = f"{node} cannot reach Cassandra for {what} (HTTP 503): {detail}"
        elif status == 409:
            message = f"{node} refused {what} (HTTP 409): {detail}"
        else:
            message = f"{node} failed {what} (HTTP {status}): {detail}"
        return SidecarError(status, message)

    def _parse(self, response: httpx.Response, model: type[_Answer]) -> _Answer:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise SidecarError(
                response.status_code,
                f"sidecar at {self.base_url} sent an answer this client cannot read "
                f"({exc.error_count()} problems, first: {exc.errors()[0]['msg']}); "
                "are the operator and the sidecar the same version?",
            ) from None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip()
    if not text:
        return response.reason_phrase or "no error text"
    return text if len(text) <= 300 else text[:297] + "..."
