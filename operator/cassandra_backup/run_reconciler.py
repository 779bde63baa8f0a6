"""Drives one BackupRun from Pending to a terminal phase, and clears it on deletion.

Everything here is plain asyncio over ``KubeApi``; the kopf handlers only call in.
Status is the single record of progress: a run picked up again after a crash reads
its tag, start time and finished nodes back from status and carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from cassandra_backup import models
from cassandra_backup.conditions import set_condition
from cassandra_backup.discovery import Node, discover_nodes, selector_string
from cassandra_backup.kube import RUNS, EventSink, KubeApi, SecretMissing
from cassandra_backup.metrics import Metrics
from cassandra_backup.runs import (
    DEFAULT_CONCURRENCY,
    FanOut,
    NodeError,
    SnapshotTaker,
    StatusBatcher,
    keyspace_listing,
    keyspaces_for_node,
    named_nodes_missing,
    overall_phase,
    succeeded_count,
)
from cassandra_backup.timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)


class WaitingForSecret(Exception):
    """The run's Secret is not there yet; the run is retried until its deadline."""


class TakerFactory(Protocol):
    """Builds the client that snapshots nodes of a sidecar backend (reads its Secrets)."""

    async def __call__(self, *, namespace: str,
                       backend: models.SidecarBackend) -> SnapshotTaker: ...


@dataclass(frozen=True)
class RunContext:
    api: KubeApi
    events: EventSink
    clock: Callable[[], datetime]
    takers: TakerFactory
    metrics: Metrics
    on_finished: Callable[[dict[str, Any], str], Awaitable[None]] | None = None
    batch_interval: float = 0.5
    concurrency: int = DEFAULT_CONCURRENCY


def _fail_status(status: dict[str, Any], *, reason: str, message: str,
                 now: datetime) -> dict[str, Any]:
    conditions = set_condition(status.get("conditions", []), type="Complete", status="True",
                               reason=reason, message=message, now=now)
    return {"phase": "Failed", "completionTime": rfc3339(now), "conditions": conditions}


async def execute_run(ctx: RunContext, body: dict[str, Any]) -> None:
    """Take the run's snapshot on every node; a terminal run is left alone."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status: dict[str, Any] = dict(body.get("status") or {})
    if status.get("phase") in models.TERMINAL_PHASES:
        return

    async def write(patch: dict[str, Any]) -> None:
        status.update(patch)
        await ctx.api.patch_status(plural=RUNS, namespace=namespace, name=name, status=patch)

    now = ctx.clock()
    try:
        spec = models.BackupRunSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        message = f"spec is not valid: {exc.errors()[0]['msg']}"
        await write(_fail_status(status, reason="InvalidSpec", message=message, now=now))
        ctx.events.warning(body, reason="InvalidSpec", message=message)
        return
    if spec.cluster.sidecars is None:
        return   # the OpsCenter backend records its runs elsewhere

    schedule_name = meta.get("labels", {}).get(models.SCHEDULE_LABEL, "")
    started = parse_rfc3339(status.get("startTime")) or now
    tag = status.get("tag") or spec.tag or name
    if status.get("phase") is None:
        ctx.metrics.run_started(namespace=namespace, schedule=schedule_name)
        log.info("run %s/%s: starting, tag %s", namespace, name, tag)

    try:
        taker = await ctx.takers(namespace=namespace, backend=spec.cluster.sidecars)
        nodes = await discover_nodes(ctx.api, namespace=namespace,
                                     backend=spec.cluster.sidecars)
    except SecretMissing as exc:
        message = f"{exc}: the sidecar token cannot be read"
        if now < started + timedelta(seconds=spec.runDeadlineSeconds):
            # The Secret may be applied in the same breath as the run: wait for it.
            conditions = set_condition(status.get("conditions", []), type="Complete",
                                       status="False", reason="SecretNotFound",
                                       message=message, now=now)
            if status.get("phase") is None:
                ctx.events.warning(body, reason="SecretNotFound", message=message)
            await write({"phase": "Pending", "tag": tag, "startTime": rfc3339(started),
                         "conditions": conditions})
            raise WaitingForSecret(message) from None
        await write({"tag": tag, "startTime": rfc3339(started),
                     **_fail_status(status, reason="SecretNotFound", message=message, now=now)})
        ctx.events.warning(body, reason="SecretNotFound", message=message)
        await _finished(ctx, body, status, schedule_name, started)
        return

    # A resumed run asks every node again: a sidecar answers a tag it already holds
    # with that snapshot and its sizes, so finished nodes cost one cheap request.
    work: list[tuple[Node, list[str]]] = []
    results: dict[str, models.NodeResult] = {}
    for node in nodes:
        keyspaces = keyspaces_for_node(spec.keyspaces, node)
        if keyspaces is None:
            continue
        work.append((node, keyspaces))
        results[node.address] = models.NodeResult(
            node=node.address, pod=node.pod, phase="Running", startTime=now)
    for address in named_nodes_missing(spec.keyspaces, nodes):
        results[address] = models.NodeResult(
            node=address, phase="Failed", error="node named in spec.keyspaces was not found",
            startTime=now, completionTime=now)

    if not results:
        message = "no nodes found: " + _where(spec.cluster.sidecars)
        await write({"tag": tag, "startTime": rfc3339(started),
                     **_fail_status(status, reason="NoNodes", message=message, now=now)})
        ctx.events.warning(body, reason="NoNodes", message=message)
        await _finished(ctx, body, status, schedule_name, started)
        return

    def nodes_patch() -> dict[str, Any]:
        ordered = [results[key] for key in sorted(results)]
        return {"nodes": [r.wire() for r in ordered], "nodesSucceeded": succeeded_count(ordered)}

    conditions = set_condition(status.get("conditions", []), type="Complete", status="False",
                               reason="Running", message=f"snapshot {tag} in progress",
                               now=now)
    await write({"phase": "Running", "tag": tag, "startTime": rfc3339(started),
                 "conditions": conditions, **nodes_patch()})

    deadline = started + timedelta(seconds=spec.runDeadlineSeconds)
    fan_out = FanOut(tag=tag, deadline=deadline, clock=ctx.clock, taker=taker,
                     deadline_seconds=spec.runDeadlineSeconds, limit=ctx.concurrency)
    batcher = StatusBatcher(write, interval=ctx.batch_interval)

    def landed(result: models.NodeResult) -> None:
        results[result.node] = result
        if result.phase == "Failed":
            log.info("run %s/%s: node %s failed: %s", namespace, name, result.node, result.error)
            ctx.events.warning(body, reason="NodeFailed",
                               message=f"node {result.node}: {result.error}")
        batcher.update(nodes_patch())

    try:
        await fan_out.run(work, landed)
    finally:
        await batcher.close()

    final = [results[key] for key in sorted(results)]
    phase = overall_phase(final)
    finished = ctx.clock()
    listing = keyspace_listing(final, fan_out.sizes)
    failed = [r for r in final if r.phase == "Failed"]
    message = f"{succeeded_count(final)} nodes hold snapshot {tag}"
    if failed:
        message += "; failed: " + "; ".join(f"{r.node}: {r.error}" for r in failed[:5])
    conditions = set_condition(status.get("conditions", []), type="Complete", status="True",
                               reason=phase, message=message, now=finished)
    await write({
        "phase": phase, "completionTime": rfc3339(finished), **nodes_patch(),
        "keyspaces": {ks: v.wire() for ks, v in listing.items()},
        "sizeBytes": sum(r.sizeBytes or 0 for r in final),
        "conditions": conditions,
    })
    log.info("run %s/%s: %s (%s)", namespace, name, phase, message)
    if phase == "Succeeded":
        ctx.events.info(body, reason="RunSucceeded", message=message)
    else:
        ctx.events.warning(body, reason=f"Run{phase}", message=message)
    await _finished(ctx, body, status, schedule_name, started)


def _where(backend: models.SidecarBackend) -> str:
    if backend.podSelector is not None:
        return f"no pod in this namespace matches selector {selector_string(backend.podSelector)!r}"
    return "spec.cluster.sidecars.endpoints is empty"


async def _finished(ctx: RunContext, body: dict[str, Any], status: dict[str, Any],
                    schedule_name: str, started: datetime) -> None:
    meta = body["metadata"]
    completed = parse_rfc3339(status.get("completionTime")) or ctx.clock()
    ctx.metrics.run_finished(namespace=meta["namespace"], schedule=schedule_name,
                             phase=str(status.get("phase")),
                             seconds=(completed - started).total_seconds(), completed=completed)
    if ctx.on_finished is not None and schedule_name:
        await ctx.on_finished({**body, "status": status}, schedule_name)


async def clear_run(ctx: RunContext, body: dict[str, Any]) -> int:
    """Clear a run's snapshot from every node that still exists; returns how many held it.

    Raises ``NodeError`` when a node that exists could not clear it, so the finalizer
    keeps the resource and the deletion is retried.
    """
    meta = body["metadata"]
    namespace = meta["namespace"]
    spec = models.BackupRunSpec.model_validate(body.get("spec") or {})
    status = body.get("status") or {}
    tag = status.get("tag")
    if spec.cluster.sidecars is None or not tag:
        return 0
    try:
        taker = await ctx.takers(namespace=namespace, backend=spec.cluster.sidecars)
    except SecretMissing as exc:
        raise NodeError(f"cannot clear snapshot {tag}: {exc}") from exc
    nodes = await discover_nodes(ctx.api, namespace=namespace, backend=spec.cluster.sidecars)
    cleared, errors = 0, []
    for node in nodes:
        if node.unavailable:
            continue
        try:
            cleared += int(await taker.clear(node, tag=tag))
        except NodeError as exc:
            errors.append(f"{node.address}: {exc}")
    if errors:
        raise NodeError(f"snapshot {tag} not cleared on " + "; ".join(errors))
    log.info("run %s/%s: snapshot %s cleared on %d nodes", namespace, meta["name"], tag, cleared)
    return cleared
