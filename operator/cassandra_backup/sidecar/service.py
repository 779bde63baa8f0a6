"""The rules that make snapshot requests safe to repeat, and the cached readiness answer.

A backup run fixes its tag before its first request and may send the same request again
after the operator restarts, so "take snapshot T of keyspaces K" must mean the same
snapshot however often it arrives. The sidecar decides that from the disk: a tag that
already covers the asked keyspaces is answered as it stands (200), one that covers others
is a conflict (409), and only a tag not on disk at all runs `nodetool snapshot`. A lock
per tag makes two identical requests arriving together produce one snapshot.

What "covers the asked keyspaces" means, given only the folders:

- Named keyspaces: the tag's keyspaces are exactly the named ones that have a table
  folder. A keyspace without tables gets no snapshot folder, so it cannot be required.
- Every keyspace (an empty list): nodetool then snapshots the system keyspaces too,
  which a request naming user keyspaces never does, so a tag holding `system` or
  `system_schema` is taken to be an every-keyspace snapshot. This misjudges a node whose
  system keyspaces live in a directory not given to the sidecar with `--data-dir`, and a
  request that itself named a system keyspace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from cassandra_backup.sidecar.inventory import (
    SnapshotOnDisk,
    find_snapshot,
    keyspaces_with_tables,
    list_snapshots,
)
from cassandra_backup.sidecar.nodetool import NodetoolError, SnapshotAlreadyExists

log = logging.getLogger(__name__)

SYSTEM_KEYSPACES: Final = frozenset({"system", "system_schema"})


class SnapshotTool(Protocol):
    """What the service needs from nodetool; tests substitute their own."""

    async def snapshot(self, *, tag: str, keyspaces: Sequence[str]) -> None: ...

    async def clear_snapshot(self, *, tag: str) -> None: ...


class SnapshotConflict(Exception):
    """The tag exists on this node with keyspaces other than the ones asked for."""

    def __init__(self, *, existing: SnapshotOnDisk, requested: Sequence[str]) -> None:
        asked = ", ".join(requested) if requested else "every keyspace"
        super().__init__(
            f"snapshot {existing.tag!r} already exists on this node with keyspaces "
            f"{', '.join(existing.keyspaces) or 'none'}, not {asked}; "
            "use another tag or clear this one first"
        )
        self.existing = existing


class SnapshotNotFound(Exception):
    def __init__(self, tag: str) -> None:
        super().__init__(f"no snapshot with tag {tag!r} on this node")


@dataclass(frozen=True, kw_only=True)
class SnapshotOutcome:
    snapshot: SnapshotOnDisk
    created: bool


def is_same_snapshot(
    existing: SnapshotOnDisk,
    requested: Sequence[str],
    *,
    keyspaces_with_tables: frozenset[str],
) -> bool:
    """Whether a request for `requested` keyspaces asks for the snapshot already on disk."""
    covered = frozenset(existing.keyspaces)
    if not requested:
        return bool(covered & SYSTEM_KEYSPACES)
    return covered == frozenset(requested) & keyspaces_with_tables


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _TagLocks:
    """One asyncio lock per tag, dropped again once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, tag: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(tag, asyncio.Lock())
        self._users[tag] = self._users.get(tag, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[tag] -= 1
            if self._users[tag] == 0:
                del self._users[tag]
                del self._locks[tag]


class SnapshotService:
    """Takes, lists and clears snapshots on this node."""

    def __init__(
        self,
        *,
        nodetool: SnapshotTool,
        data_dirs: Sequence[Path],
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._nodetool = nodetool
        self._data_dirs = list(data_dirs)
        self._clock = clock
        self._locks = _TagLocks()

    async def take(self, *, tag: str, keyspaces: Sequence[str]) -> SnapshotOutcome:
        """Snapshot `keyspaces` (all when empty) under `tag`, or answer the existing one."""
        async with self._locks.hold(tag):
            existing = await self._find(tag)
            if existing is not None:
                return await self._answer_existing(existing, keyspaces)

            try:
                await self._nodetool.snapshot(tag=tag, keyspaces=keyspaces)
            except SnapshotAlreadyExists as exc:
                # Someone other than this sidecar made the tag after it looked.
                existing = await self._find(tag)
                if existing is None:
                    raise SnapshotAlreadyExists(
                        f"{exc} No folder of it is under {self._data_dirs_text()}: "
                        "--data-dir must name every data directory of this node"
                    ) from exc
                return await self._answer_existing(existing, keyspaces)

            made = await self._find(tag)
            if made is None:
                log.warning(
                    "snapshot %s: nodetool succeeded but no folder for it is under %s; "
                    "the keyspaces have no tables, or --data-dir misses a data directory",
                    tag,
                    self._data_dirs_text(),
                )
                made = SnapshotOnDisk(tag=tag, keyspace_sizes={}, created_at=self._clock())
            log.info(
                "snapshot %s taken: keyspaces %s, %d bytes",
                tag,
                ", ".join(made.keyspaces) or "none",
                made.size_bytes,
            )
            return SnapshotOutcome(snapshot=made, created=True)

    async def snapshots(self) -> list[SnapshotOnDisk]:
        """Every tag on this node, oldest first."""
        return await asyncio.to_thread(list_snapshots, self._data_dirs)

    async def clear(self, *, tag: str) -> None:
        """Clear `tag` in every keyspace; `SnapshotNotFound` if no table has it."""
        async with self._locks.hold(tag):
            if await self._find(tag) is None:
                raise SnapshotNotFound(tag)
            await self._nodetool.clear_snapshot(tag=tag)
            log.info("snapshot %s cleared", tag)

    def _data_dirs_text(self) -> str:
        return ", ".join(str(path) for path in self._data_dirs)

    async def _find(self, tag: str) -> SnapshotOnDisk | None:
        return await asyncio.to_thread(find_snapshot, self._data_dirs, tag)

    async def _answer_existing(
        self, existing: SnapshotOnDisk, requested: Sequence[str]
    ) -> SnapshotOutcome:
        with_tables = await asyncio.to_thread(keyspaces_with_tables, self._data_dirs)
        if not is_same_snapshot(existing, requested, keyspaces_with_tables=with_tables):
            log.info(
                "snapshot %s refused: it exists with keyspaces %s, the request names %s",
                existing.tag,
                ", ".join(existing.keyspaces),
                ", ".join(requested) or "every keyspace",
            )
            raise SnapshotConflict(existing=existing, requested=requested)
        log.info("snapshot %s already exists with the asked keyspaces", existing.tag)
        return SnapshotOutcome(snapshot=existing, created=False)


@dataclass(frozen=True, kw_only=True)
class Readiness:
    ready: bool
    reason: str


class ReadinessProbe:
    """Answers "does nodetool reach Cassandra?", re-asking at most once per `ttl_seconds`.

    Each check starts a JVM, which costs a second or more of CPU; probes every few
    seconds from the kubelet must not each pay that. Concurrent callers share one check.
    """

    def __init__(
        self,
        check: Callable[[], Awaitable[object]],
        *,
        ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last: Readiness | None = None
        self._checked_at = 0.0

    async def current(self) -> Readiness:
        async with self._lock:
            if self._last is not None and self._clock() - self._checked_at < self._ttl_seconds:
                return self._last

            try:
                await self._check()
                answer = Readiness(ready=True, reason="nodetool reaches Cassandra")
            except NodetoolError as exc:
                answer = Readiness(ready=False, reason=str(exc))

            if self._last is None or self._last.ready != answer.ready:
                log.info(
                    "readiness: %s", "ready" if answer.ready else f"not ready: {answer.reason}"
                )
            self._last = answer
            self._checked_at = self._clock()
            return answer
