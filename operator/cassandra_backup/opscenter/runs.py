"""BackupRun against OpsCenter: an ad hoc backup, or a mirrored one filled in.

A run a user wrote asks OpsCenter for one backup now and records each node's answer.
OpsCenter's request may be carried out although its answer is lost, so the run marks
the request as sent first and, on a second attempt, looks for a backup OpsCenter took
since the run started before it asks again. A run that mirrors a scheduled backup
only copies the listing entry into its status.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from cassandra_backup import models
from cassandra_backup.kube import RUNS, SecretMissing
from cassandra_backup.opscenter import mapping
from cassandra_backup.opscenter.client import OpsCenterClient
from cassandra_backup.opscenter.context import InvalidCA, OpsCenterContext, RetryLater
from cassandra_backup.opscenter.errors import OpsCenterError
from cassandra_backup.opscenter.mirror import mirror_status, mirrored_tag
from cassandra_backup.runs import overall_phase, succeeded_count
from cassandra_backup.status import StatusDraft
from cassandra_backup.timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

REQUESTED = "Requested"
ADHOC = "adhoc"
# OpsCenter's clock and the operator's may disagree; an ad hoc backup found in the
# listing counts as this run's when taken at most this long before the run started.
CLOCK_SLACK = timedelta(minutes=1)


async def execute_run(ctx: OpsCenterContext, body: dict[str, Any]) -> None:
    """Take an ad hoc backup through OpsCenter, or fill in a mirrored run from the listing.

    Returns with the run terminal, or raises to be called again later (OpsCenter
    unavailable): the caller's retries are the back-off.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    now = ctx.clock()

    async def write(changes: dict[str, Any]) -> None:
        await ctx.api.patch_status(plural=RUNS, namespace=namespace, name=name, status=changes)

    status = StatusDraft(dict(body.get("status") or {}), now=now, generation=None, write=write)
    if status.get("phase") in models.TERMINAL_PHASES:
        return
    run = _AdhocRun(ctx, body, status)
    try:
        spec = models.BackupRunSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        await run.fail("InvalidSpec", f"spec is not valid: {exc.errors()[0]['msg']}")
        return
    backend = spec.cluster.opscenter
    if backend is None:
        return

    try:
        client = await ctx.client(namespace=namespace, backend=backend)
    except (SecretMissing, InvalidCA) as exc:
        await run.fail("SecretNotFound" if isinstance(exc, SecretMissing) else "InvalidCA",
                       f"spec.cluster.opscenter: {exc}")
        return
    if mirrored_tag(body) is not None:
        await run.mirror(client, spec)
    else:
        await run.take(client, spec)


class _AdhocRun:
    def __init__(self, ctx: OpsCenterContext, body: dict[str, Any], status: StatusDraft) -> None:
        self.ctx, self.body, self.status = ctx, body, status
        meta = body["metadata"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.schedule_name = (meta.get("labels") or {}).get(models.SCHEDULE_LABEL, "")
        self.started = parse_rfc3339(status.get("startTime")) or status.now

    def _log(self, message: str) -> None:
        log.info("run %s/%s: %s", self.namespace, self.name, message)

    async def fail(self, reason: str, message: str) -> None:
        now = self.ctx.clock()
        self.status.set(phase="Failed", startTime=rfc3339(self.started),
                        completionTime=rfc3339(now))
        self.status.condition("Complete", "True", reason, message)
        await self.status.save()
        self._log(f"Failed: {message}")
        self.ctx.events.warning(self.body, reason=reason, message=message)
        self._finished("Failed", now)

    def _finished(self, phase: str, completed: datetime) -> None:
        self.ctx.metrics.run_finished(namespace=self.namespace, schedule=self.schedule_name,
                                      phase=phase,
                                      seconds=(completed - self.started).total_seconds(),
                                      completed=completed)

    async def mirror(self, client: OpsCenterClient, spec: models.BackupRunSpec) -> None:
        tag = mirrored_tag(self.body)
        assert tag is not None
        try:
            listing = await client.list_backups(spec.cluster.name)
        except OpsCenterError as exc:
            if exc.transient:
                raise
            await self.fail(exc.reason, str(exc))
            return
        backup = listing.get(tag)
        if backup is None:
            await self.fail("BackupNotListed", f"OpsCenter does not list backup {tag}")
            return
        self.status.set(**mirror_status(backup, now=self.status.now))
        await self.status.save()

    async def take(self, client: OpsCenterClient, spec: models.BackupRunSpec) -> None:
        status, cluster = self.status, spec.cluster.name
        if status.get("phase") is None:
            self.ctx.metrics.run_started(namespace=self.namespace, schedule=self.schedule_name)
            self._log(f"asking OpsCenter for a backup of cluster {cluster}")
            status.set(phase="Running", startTime=rfc3339(self.started))
        remaining = (self.started + timedelta(seconds=spec.runDeadlineSeconds)
                     - status.now).total_seconds()
        if remaining <= 0:
            earlier = status.condition_of("Complete").get("message") or "no answer"
            await self.fail("DeadlineExceeded",
                            f"OpsCenter did not take the backup within runDeadlineSeconds "
                            f"({spec.runDeadlineSeconds} s); last: {earlier}")
            return

        try:
            # A request marked as sent but never answered may have been carried out:
            # a backup OpsCenter lists since the start is this run's.
            if status.condition_of("Complete").get("reason") == REQUESTED:
                found = await self._find_backup(client, spec)
                if found is not None:
                    self._log(f"OpsCenter lists backup {found.tag} from an earlier request")
                    await self._record(spec, [], found)
                    return
            status.condition("Complete", "False", REQUESTED,
                             f"asked OpsCenter for a backup (POST /{cluster}/backups/run)")
            await status.save()
            outcomes = await client.run_backup(cluster, dict(spec.keyspaces),
                                               answer_within=remaining)
        except OpsCenterError as exc:
            if not exc.transient:
                await self.fail(exc.reason, str(exc))
                return
            message = f"OpsCenter has not confirmed the backup: {exc}"
            if status.condition("Complete", "False", REQUESTED, message):
                self.ctx.events.warning(self.body, reason=exc.reason, message=message)
            await status.save()
            raise RetryLater(message) from None

        found = None
        try:
            found = await self._find_backup(client, spec, outcomes=outcomes)
        except OpsCenterError as exc:
            self._log(f"sizes not known: the backup listing failed: {exc}")
        await self._record(spec, outcomes, found)

    async def _find_backup(self, client: OpsCenterClient, spec: models.BackupRunSpec, *,
                           outcomes: list[mapping.NodeOutcome] | None = None,
                           ) -> mapping.Backup | None:
        """The ad hoc backup in OpsCenter's listing that this run took, if one fits."""
        listing = await client.list_backups(spec.cluster.name)
        others = await self.ctx.api.list_runs(namespace=self.namespace)
        claimed = {(run.get("status") or {}).get("backupId") for run in others
                   if run["metadata"]["name"] != self.name}
        wanted = set(spec.keyspaces)
        nodes = {o.node for o in outcomes or [] if o.ok}
        fits = [b for b in listing.values()
                if b.schedule_id == ADHOC and b.tag not in claimed
                and b.time >= self.started - CLOCK_SLACK
                and wanted <= set(b.keyspaces) and nodes <= set(b.nodes)]
        return min(fits, key=lambda b: b.time) if fits else None

    async def _record(self, spec: models.BackupRunSpec, outcomes: list[mapping.NodeOutcome],
                      backup: mapping.Backup | None) -> None:
        finished = self.ctx.clock()
        results = [models.NodeResult(node=o.node, phase="Succeeded" if o.ok else "Failed",
                                     error=o.error, startTime=self.started,
                                     completionTime=finished) for o in outcomes]
        if not results and backup is not None:
            results = [models.NodeResult(node=node, phase="Succeeded", startTime=self.started,
                                         completionTime=finished) for node in backup.nodes]
        results.sort(key=lambda r: r.node)
        phase = overall_phase(results) if results else "Succeeded"
        succeeded = {r.node for r in results if r.phase == "Succeeded"}

        if backup is not None:
            keyspaces = {ks: entry.wire()
                         for ks, entry in sorted(backup.keyspaces.items())}
        else:
            keyspaces = {ks: {"nodes": sorted(succeeded & set(wanted.nodes) if wanted.nodes
                                              else succeeded)}
                         for ks, wanted in sorted(spec.keyspaces.items())}
        failed = [r for r in results if r.phase == "Failed"]
        message = f"OpsCenter took the backup on {succeeded_count(results)} nodes"
        if failed:
            message += "; failed: " + "; ".join(f"{r.node}: {r.error}" for r in failed[:5])
        changes: dict[str, Any] = {
            "phase": phase, "startTime": rfc3339(self.started),
            "completionTime": rfc3339(finished), "nodes": [r.wire() for r in results],
            "nodesSucceeded": succeeded_count(results), "keyspaces": keyspaces,
        }
        if backup is not None:
            changes.update(tag=backup.tag, backupId=backup.tag, sizeBytes=backup.size_bytes)
        self.status.set(**changes)
        self.status.condition("Complete", "True", phase, message)
        await self.status.save()

        for result in failed:
            self._log(f"node {result.node} failed: {result.error}")
            self.ctx.events.warning(self.body, reason="NodeFailed",
                                    message=f"node {result.node}: {result.error}")
        self._log(f"{phase} ({message})")
        if phase == "Succeeded":
            self.ctx.events.info(self.body, reason="RunSucceeded", message=message)
        else:
            self.ctx.events.warning(self.body, reason=f"Run{phase}", message=message)
        self._finished(phase, finished)
