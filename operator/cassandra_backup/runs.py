"""One run fanned out over its nodes, its phase, and retention of old runs.

The fan-out is concurrent and bounded, so a run over N nodes lasts about as long as
its slowest node. Each node's result is handed to ``on_result`` the moment it lands;
the caller batches those into status writes (``StatusBatcher``).

Restart safety rests on two facts: the snapshot tag is fixed in status before the
first node request, and a sidecar answers a repeated tag with the snapshot it already
has. A run resumed after a crash therefore keeps its finished nodes and asks the rest
again, and no node ends up with two snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from cassandra_backup import models
from cassandra_backup.discovery import Node

# The bound caps the operator's own sockets and memory; each node only ever gets one
# request per run, so it does not protect the nodes. 64 lets clusters of up to 64
# nodes finish in one wave (a run then lasts as long as its slowest node).
DEFAULT_CONCURRENCY = 64


class NodeError(Exception):
    """A node could not take or clear a snapshot; the message is for a person."""


@dataclass(frozen=True)
class NodeSnapshot:
    """What one node reports for a snapshot it holds."""

    size_bytes: int
    keyspace_sizes: dict[str, int]


class SnapshotTaker(Protocol):
    """Takes and clears one node's snapshot (the sidecar client, in production)."""

    async def snapshot(self, node: Node, *, tag: str, keyspaces: list[str]) -> NodeSnapshot: ...

    async def clear(self, node: Node, *, tag: str) -> bool: ...


def keyspaces_for_node(spec_keyspaces: dict[str, models.RunKeyspace],
                       node: Node) -> list[str] | None:
    """Keyspaces to snapshot on ``node``: [] means all, None means the node is not in the run."""
    if not spec_keyspaces:
        return []
    chosen = [name for name, wanted in sorted(spec_keyspaces.items())
              if not wanted.nodes or node.address in wanted.nodes]
    return chosen or None


def named_nodes_missing(spec_keyspaces: dict[str, models.RunKeyspace],
                        nodes: Iterable[Node]) -> list[str]:
    """Node addresses the spec names that discovery did not find."""
    known = {node.address for node in nodes}
    named = {address for wanted in spec_keyspaces.values() for address in wanted.nodes}
    return sorted(named - known)


def overall_phase(results: Iterable[models.NodeResult]) -> models.RunPhase:
    phases = [result.phase for result in results]
    if phases and all(phase == "Succeeded" for phase in phases):
        return "Succeeded"
    if any(phase == "Succeeded" for phase in phases):
        return "PartiallyFailed"
    return "Failed"


def keyspace_listing(results: Iterable[models.NodeResult],
                     sizes: dict[str, dict[str, int]]) -> dict[str, models.RunKeyspace]:
    """The run's keyspaces in OpsCenter's listing shape: nodes holding each, bytes summed."""
    nodes: dict[str, list[str]] = {}
    totals: dict[str, int] = {}
    for result in results:
        if result.phase != "Succeeded":
            continue
        for keyspace, size in sizes.get(result.node, {}).items():
            nodes.setdefault(keyspace, []).append(result.node)
            totals[keyspace] = totals.get(keyspace, 0) + size
    return {keyspace: models.RunKeyspace(nodes=sorted(nodes[keyspace]), size=totals[keyspace])
            for keyspace in sorted(nodes)}


def succeeded_count(results: Iterable[models.NodeResult]) -> str:
    listed = list(results)
    done = sum(1 for result in listed if result.phase == "Succeeded")
    return f"{done}/{len(listed)}"


@dataclass
class FanOut:
    """One run's node requests, with the results gathered so far."""

    tag: str
    deadline: datetime
    clock: Callable[[], datetime]
    taker: SnapshotTaker
    deadline_seconds: int
    limit: int = DEFAULT_CONCURRENCY
    results: dict[str, models.NodeResult] = field(default_factory=dict)
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)

    async def run(self, work: list[tuple[Node, list[str]]],
                  on_result: Callable[[models.NodeResult], None]) -> None:
        gate = asyncio.Semaphore(self.limit)

        async def one(node: Node, keyspaces: list[str]) -> None:
            async with gate:
                result = await self._node(node, keyspaces)
            self.results[node.address] = result
            on_result(result)

        await asyncio.gather(*(one(node, keyspaces) for node, keyspaces in work))

    async def _node(self, node: Node, keyspaces: list[str]) -> models.NodeResult:
        started = self.clock()
        base = {"node": node.address, "pod": node.pod, "startTime": started}
        if node.unavailable:
            return models.NodeResult(**base, phase="Failed", error=node.unavailable,
                                     completionTime=started)
        remaining = (self.deadline - started).total_seconds()
        if remaining <= 0:
            return models.NodeResult(**base, phase="Failed", error=self._late(),
                                     completionTime=started)
        try:
            async with asyncio.timeout(remaining):
                snapshot = await self.taker.snapshot(node, tag=self.tag, keyspaces=keyspaces)
        except TimeoutError:
            error = self._late()
        except NodeError as exc:
            error = str(exc)
        else:
            self.sizes[node.address] = snapshot.keyspace_sizes
            return models.NodeResult(**base, phase="Succeeded", sizeBytes=snapshot.size_bytes,
                                     completionTime=self.clock())
        return models.NodeResult(**base, phase="Failed", error=error,
                                 completionTime=self.clock())

    def _late(self) -> str:
        return f"did not finish within the run deadline ({self.deadline_seconds} s)"


class StatusBatcher:
    """Coalesces status patches: at most one write per ``interval`` seconds.

    ``update`` merges a patch into what is pending and makes sure a flush is
    scheduled; ``close`` writes whatever is left. Later values win per top-level key,
    so each write carries the newest full value of every field it touches.
    """

    def __init__(self, write: Callable[[dict[str, Any]], Awaitable[None]], *,
                 interval: float = 0.5) -> None:
        self._write = write
        self._interval = interval
        self._pending: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_write = float("-inf")
        self._lock = asyncio.Lock()
        self.writes = 0

    def update(self, patch: dict[str, Any]) -> None:
        self._pending.update(patch)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_write + self._interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            patch, self._pending = self._pending, {}
            self._last_write = asyncio.get_running_loop().time()
            self.writes += 1
            await self._write(patch)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


@dataclass(frozen=True)
class RunRecord:
    """A run as retention sees it."""

    name: str
    scheduled_at: datetime
    phase: str | None


def expired_runs(runs: Iterable[RunRecord], *, now: datetime,
                 max_age: timedelta) -> list[RunRecord]:
    """Finished runs older than ``max_age``; the newest successful run is always kept."""
    listed = list(runs)
    succeeded = [run for run in listed if run.phase == "Succeeded"]
    keep = max(succeeded, key=lambda run: run.scheduled_at).name if succeeded else None
    cutoff = now - max_age
    return sorted(
        (run for run in listed
         if run.phase in models.TERMINAL_PHASES and run.scheduled_at < cutoff
         and run.name != keep),
        key=lambda run: run.scheduled_at)


def age(amount: int, unit: models.IntervalUnit) -> timedelta:
    return {"minutes": timedelta(minutes=amount), "hours": timedelta(hours=amount),
            "days": timedelta(days=amount), "weeks": timedelta(weeks=amount)}[unit]
