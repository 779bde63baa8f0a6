"""BackupSchedule against OpsCenter: one OpsCenter job schedule per BackupSchedule.

With this backend OpsCenter is the scheduler. The operator creates, updates, suspends
and deletes the job schedule, and mirrors what OpsCenter reports: ``next_run`` and
``last_run`` into the schedule's status, and every backup OpsCenter took for it into a
BackupRun (see ``mirror``).

What the operator remembers lives in status, so a restart picks up where it was:

- ``status.id`` is the OpsCenter job schedule id, written the moment the POST answers.
- ``status.observedGeneration`` is the generation OpsCenter last accepted; a newer
  generation is sent with PUT.
- The ``Registered`` condition says whether OpsCenter holds the schedule: ``True``
  with an id; ``Unknown`` while a POST is out or after one whose answer was lost, so
  the next attempt first looks for a schedule with exactly these fields and adopts
  it instead of posting a second one; ``False`` when there is none.

Failures are conditions and Events, paced by the shared ``Backoff``.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from cassandra_backup import models, schedule
from cassandra_backup.conditions import condition
from cassandra_backup.kube import RUNS, SecretMissing
from cassandra_backup.opscenter import mapping
from cassandra_backup.opscenter.client import OpsCenterClient
from cassandra_backup.opscenter.context import (
    REFUSED_RECHECK,
    InvalidCA,
    OpsCenterContext,
    RetryLater,
)
from cassandra_backup.opscenter.errors import (
    OpsCenterError,
    OpsCenterNotFound,
    OpsCenterRefused,
    OpsCenterUnavailable,
)
from cassandra_backup.opscenter.mirror import mirror_body, mirror_names, mirror_status, mirrored_tag
from cassandra_backup.schedule_reconciler import SECRET_RECHECK, ScheduleDraft, Wake
from cassandra_backup.status import StatusDraft
from cassandra_backup.timefmt import rfc3339

log = logging.getLogger(__name__)

REGISTERED = "Registered"
DELETE_REFUSED_RECHECK = timedelta(minutes=1)


async def reconcile_schedule(ctx: OpsCenterContext, body: dict[str, Any]) -> Wake:
    """Make OpsCenter hold the schedule as specified, then mirror what it reports."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    now = ctx.clock()
    status = ScheduleDraft(api=ctx.api, events=ctx.events, body=body, now=now)
    generation = int(meta.get("generation", 0))
    not_ready = status.not_ready

    parsed = status.parse()
    if parsed is None:
        await status.save()
        return Wake(None)
    spec = parsed[0]
    backend = spec.cluster.opscenter
    if backend is None:
        return Wake(None)

    try:
        client = await ctx.client(namespace=namespace, backend=backend)
    except SecretMissing as exc:
        not_ready("SecretNotFound", f"spec.cluster.opscenter: {exc}")
        await status.save()
        return Wake(now + SECRET_RECHECK)
    except InvalidCA as exc:
        secret = backend.caSecret
        assert secret is not None
        not_ready("InvalidCA", f"spec.cluster.opscenter.caSecret: key {secret.key!r} of Secret "
                               f"{namespace}/{secret.name} {exc}")
        await status.save()
        return Wake(now + SECRET_RECHECK)

    key, version = (namespace, name), (generation, ctx.clients.fingerprint(client))
    blocked = ctx.backoff.blocked_until(key, version=version, now=now)
    if blocked is not None:
        await status.save()
        return Wake(blocked)

    job = _ScheduleSync(ctx, body, spec, client, status)
    try:
        if spec.suspend:
            await job.suspend()
        else:
            await job.sync()
    except OpsCenterError as exc:
        retry_at = ctx.backoff.failed(key, version=version, now=now,
                                      transient=exc.transient, base=ctx.backoff_base)
        reason, message = _schedule_failure(exc, spec)
        if not exc.transient:
            # Refused: OpsCenter holds nothing that will run. While it is merely out of
            # reach, the last nextRun it showed stays, as the best guess there is.
            status.set(nextRun=None, nextRunLocal=None)
        changed = status.condition("Ready", "False", reason, message)
        log.info("schedule %s/%s: %s; next attempt at %s", namespace, name, message,
                 rfc3339(retry_at))
        if changed:
            ctx.events.warning(body, reason=reason, message=message)
        await status.save()
        return Wake(retry_at)

    ctx.backoff.succeeded(key)
    await status.save()
    return Wake(now + ctx.poll_interval)


def _schedule_failure(exc: OpsCenterError, spec: models.BackupScheduleSpec) -> tuple[str, str]:
    # Every 404 that reaches here came from a cluster-wide path (the listing, the POST):
    # job schedule ids that OpsCenter does not know are handled where they occur.
    if isinstance(exc, OpsCenterNotFound):
        return "ClusterNotFound", (f"{exc}; check that spec.cluster.name "
                                   f"({spec.cluster.name}) is a cluster id of this OpsCenter")
    if exc.transient:
        return exc.reason, f"{exc}; retrying with back-off"
    return exc.reason, (f"{exc}; asked again when the spec or its Secrets change, or in "
                        f"{REFUSED_RECHECK.total_seconds() / 60:.0f} minutes")


class _ScheduleSync:
    """One pass over one schedule: create, update or recreate it, then mirror it."""

    def __init__(self, ctx: OpsCenterContext, body: dict[str, Any],
                 spec: models.BackupScheduleSpec, client: OpsCenterClient,
                 status: StatusDraft) -> None:
        self.ctx, self.body, self.spec, self.client, self.status = ctx, body, spec, client, status
        meta = body["metadata"]
        self.namespace, self.name = meta["namespace"], meta["name"]
        self.cluster = spec.cluster.name
        self.wire = mapping.schedule_body(spec)

    def _log(self, message: str) -> None:
        log.info("schedule %s/%s: %s", self.namespace, self.name, message)

    def _info(self, reason: str, message: str) -> None:
        self._log(message)
        self.ctx.events.info(self.body, reason=reason, message=message)

    def _warn(self, reason: str, message: str) -> None:
        self._log(message)
        self.ctx.events.warning(self.body, reason=reason, message=message)

    async def sync(self) -> None:
        status = self.status
        status.condition("Suspended", "False", "Active", "spec.suspend is false")
        schedule_id: str | None = status.get("id")
        if schedule_id is None:
            schedule_id = await self._create()
        elif status.get("observedGeneration") != status.generation:
            schedule_id = await self._update(schedule_id)

        try:
            found: mapping.JobSchedule | None = await self.client.get_schedule(
                self.cluster, schedule_id)
        except OpsCenterNotFound:
            schedule_id, found = await self._vanished(schedule_id)
        if found is not None:
            self._mirror_schedule(found)
        await self._mirror_backups(schedule_id)

    async def suspend(self) -> None:
        status = self.status
        schedule_id: str | None = status.get("id")
        if schedule_id is None and status.condition_of(REGISTERED).get("status") == "Unknown":
            match = await self._lookup()
            schedule_id = match.id if match else None
        if schedule_id is not None:
            with contextlib.suppress(OpsCenterNotFound):   # then nothing is left to fire
                await self.client.delete_schedule(self.cluster, schedule_id)
            self._info("ScheduleSuspended", f"deleted OpsCenter job schedule {schedule_id}: "
                                            "spec.suspend is true")
        status.set(id=None, nextRun=None, nextRunLocal=None,
                   observedGeneration=status.generation)
        status.condition(REGISTERED, "False", "Suspended",
                         "spec.suspend is true: OpsCenter holds no job schedule for it")
        status.condition("Suspended", "True", "Suspended", "spec.suspend is true")
        status.condition("Ready", "True", "Suspended", "suspended: OpsCenter takes no backups")
        self.ctx.metrics.next_tick(namespace=self.namespace, schedule=self.name, tick=None)
        await self._mirror_backups(None)

    async def _lookup(self) -> mapping.JobSchedule | None:
        """The OpsCenter schedule with exactly this spec's fields, if there is one.

        Not handled: two BackupSchedules with identical fields for one cluster whose
        POST answers were both lost could adopt the same OpsCenter schedule.
        """
        schedules = await self.client.list_schedules(self.cluster)
        return next((s for s in schedules if mapping.same_schedule(self.wire, s)), None)

    async def _create(self) -> str:
        status = self.status
        if status.condition_of(REGISTERED).get("status") == "Unknown":
            match = await self._lookup()
            if match is not None:
                self._registered(match.id)
                await status.save()
                self._info("ScheduleAdopted",
                           f"found OpsCenter job schedule {match.id} with this spec in cluster "
                           f"{self.cluster}, made by a request whose answer was lost; using it")
                return match.id

        status.condition(REGISTERED, "Unknown", "Creating",
                         f"asking OpsCenter to create the job schedule in cluster {self.cluster}")
        await status.save()
        try:
            schedule_id = await self.client.create_schedule(self.cluster, self.wire)
        except OpsCenterRefused as exc:
            status.condition(REGISTERED, "False", "CreateRefused", str(exc))
            raise
        self._registered(schedule_id)
        await status.save()   # the id is on record before anything else happens
        self._info("ScheduleCreated",
                   f"created OpsCenter job schedule {schedule_id} in cluster {self.cluster}")
        return schedule_id

    def _registered(self, schedule_id: str) -> None:
        self.status.set(id=schedule_id, observedGeneration=self.status.generation)
        self.status.condition(REGISTERED, "True", "Registered",
                              f"OpsCenter job schedule {schedule_id} in cluster {self.cluster}")

    async def _update(self, schedule_id: str) -> str:
        # Not handled: when spec.cluster.name itself changed, the id is unknown in the new
        # cluster, so the schedule is created there and the old one stays in the old cluster.
        try:
            await self.client.modify_schedule(self.cluster, schedule_id, self.wire)
        except OpsCenterNotFound:
            recreated, _ = await self._vanished(schedule_id)
            return recreated
        self.status.set(observedGeneration=self.status.generation)
        await self.status.save()
        self._info("ScheduleUpdated",
                   f"sent the changed spec to OpsCenter job schedule {schedule_id}")
        return schedule_id

    async def _vanished(self, schedule_id: str) -> tuple[str, mapping.JobSchedule | None]:
        """OpsCenter answered 404 for the id: recreate the schedule, unless it is a one-time
        job whose time has passed (OpsCenter may drop those once they ran)."""
        # The listing tells an unknown cluster (it fails too) from an unknown id.
        schedules = await self.client.list_schedules(self.cluster)
        if any(s.id == schedule_id for s in schedules):
            raise OpsCenterUnavailable(
                f"OpsCenter at {self.client.base_url} lists job schedule {schedule_id} but "
                "answers 404 for it")
        if self.spec.interval == mapping.ONE_TIME_INTERVAL and self._first_run_passed():
            self.status.set(nextRun=None, nextRunLocal=None)
            if self.status.condition(REGISTERED, "False", "Completed",
                                     f"OpsCenter no longer holds one-time job schedule "
                                     f"{schedule_id}; its run time has passed"):
                self._log(f"one-time job schedule {schedule_id} is gone after its run time")
            self.status.condition("Ready", "True", "Completed", "one-time job: no further runs")
            return schedule_id, None

        self._warn("ScheduleRecreated",
                   f"OpsCenter job schedule {schedule_id} is gone from cluster {self.cluster} "
                   "(deleted outside Kubernetes?); creating it again")
        self.status.set(id=None)
        self.status.condition(REGISTERED, "False", "Vanished",
                              f"OpsCenter job schedule {schedule_id} is gone")
        new_id = await self._create()
        return new_id, await self.client.get_schedule(self.cluster, new_id)

    def _first_run_passed(self) -> bool:
        recurrence = schedule.Recurrence.parse(
            first_run_date=self.spec.firstRunDate, first_run_time=self.spec.firstRunTime,
            timezone=self.spec.timezone, interval=self.spec.interval,
            interval_unit=self.spec.intervalUnit)
        return schedule.tick(recurrence, 0) <= self.status.now

    def _mirror_schedule(self, found: mapping.JobSchedule) -> None:
        status = self.status
        next_run = mapping.parse_opscenter_time(found.next_run, timezone=self.spec.timezone)
        last_run = mapping.parse_opscenter_time(found.last_run, timezone=self.spec.timezone)
        status.set(nextRun=rfc3339(next_run) if next_run else None,
                   nextRunLocal=found.next_run or None)
        if last_run is not None:
            status.set(lastRun=rfc3339(last_run))
        status.condition(REGISTERED, "True", "Registered",
                         f"OpsCenter job schedule {found.id} in cluster {self.cluster}")
        if found.next_run:
            status.condition("Ready", "True", "Scheduled",
                             f"OpsCenter job schedule {found.id}; next run {found.next_run}")
        else:
            status.condition("Ready", "True", "Completed",
                             f"OpsCenter job schedule {found.id} shows no next run")
        self.ctx.metrics.next_tick(namespace=self.namespace, schedule=self.name, tick=next_run)

    async def _mirror_backups(self, schedule_id: str | None) -> None:
        """One BackupRun per backup OpsCenter lists for the schedule; a run whose backup
        OpsCenter no longer lists (its retention removed it) is removed too."""
        listing = await self.client.list_backups(self.cluster)
        runs = await self.ctx.api.list_runs(
            namespace=self.namespace, selector=f"{models.SCHEDULE_LABEL}={self.name}")
        mirrors = {tag: run for run in runs if (tag := mirrored_tag(run)) is not None}
        newest: tuple[datetime, str] | None = None

        for tag, run in sorted(mirrors.items()):
            run_name = run["metadata"]["name"]
            backup = listing.get(tag)
            if backup is None:
                await self.ctx.api.delete_run(namespace=self.namespace, name=run_name)
                self._info("BackupRemoved", f"OpsCenter no longer lists backup {tag}; removed "
                                            f"BackupRun {run_name}")
                continue
            if (run.get("status") or {}).get("phase") is None:
                await self.ctx.api.patch_status(plural=RUNS, namespace=self.namespace,
                                                name=run_name,
                                                status=mirror_status(backup, now=self.status.now))
            newest = max(newest or (backup.time, run_name), (backup.time, run_name))

        taken = sorted((b for b in listing.values()
                        if schedule_id is not None and b.schedule_id == schedule_id
                        and b.tag not in mirrors), key=lambda b: (b.time, b.tag))
        taken_names = {run["metadata"]["name"] for run in runs}
        for backup in taken:
            run_name = await self._record(backup, taken_names)
            if run_name is not None:
                taken_names.add(run_name)
                newest = max(newest or (backup.time, run_name), (backup.time, run_name))
        if newest is not None:
            self.status.set(lastRunName=newest[1])
        self.status.set(activeRuns=[])

    async def _record(self, backup: mapping.Backup, taken_names: set[str]) -> str | None:
        """Create the BackupRun of one backup OpsCenter took; its name, or None on a clash."""
        for run_name in mirror_names(self.name, backup):
            if run_name in taken_names:
                continue
            body = mirror_body(schedule_body=self.body, spec=self.spec, backup=backup,
                               name=run_name)
            if not await self.ctx.api.create_run(namespace=self.namespace, body=body):
                existing = await self.ctx.api.get_run(namespace=self.namespace, name=run_name)
                if existing is None or mirrored_tag(existing) != backup.tag:
                    continue
            await self.ctx.api.patch_status(plural=RUNS, namespace=self.namespace,
                                            name=run_name,
                                            status=mirror_status(backup, now=self.status.now))
            self.ctx.metrics.run_started(namespace=self.namespace, schedule=self.name)
            self.ctx.metrics.run_finished(namespace=self.namespace, schedule=self.name,
                                          phase="Succeeded", seconds=0.0,
                                          completed=backup.time)
            self._info("BackupRecorded", f"OpsCenter took backup {backup.tag} at "
                                         f"{rfc3339(backup.time)}; recorded as BackupRun "
                                         f"{run_name}")
            return run_name
        self._log(f"no free BackupRun name for OpsCenter backup {backup.tag}; not recorded")
        return None


async def delete_schedule(ctx: OpsCenterContext, body: dict[str, Any]) -> None:
    """Delete the OpsCenter job schedule; ``RetryLater`` until done or OpsCenter says the id
    is gone, which holds the resource's finalizer."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    key = (namespace, name)
    now = ctx.clock()
    generation = int(meta.get("generation", 0))
    try:
        spec = models.BackupScheduleSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        log.info("schedule %s/%s: spec is not valid; nothing to delete in OpsCenter",
                 namespace, name)
        return
    backend = spec.cluster.opscenter
    status = dict(body.get("status") or {})
    schedule_id: str | None = status.get("id")
    in_flight = (condition(status.get("conditions") or [], REGISTERED) or {}).get(
        "status") == "Unknown"
    if backend is None or (schedule_id is None and not in_flight):
        return

    what = f"OpsCenter job schedule {schedule_id}" if schedule_id else "the OpsCenter job schedule"
    try:
        client = await ctx.client(namespace=namespace, backend=backend)
    except (SecretMissing, InvalidCA) as exc:
        message = f"cannot delete {what}: spec.cluster.opscenter: {exc}"
        ctx.events.warning(body, reason="DeleteFailed", message=message)
        raise RetryLater(message, delay=SECRET_RECHECK.total_seconds()) from None

    try:
        if schedule_id is None:
            wire = mapping.schedule_body(spec)
            schedules = await client.list_schedules(spec.cluster.name)
            match = next((s for s in schedules if mapping.same_schedule(wire, s)), None)
            if match is None:
                return
            schedule_id, what = match.id, f"OpsCenter job schedule {match.id}"
        try:
            await client.delete_schedule(spec.cluster.name, schedule_id)
        except OpsCenterNotFound:
            listed = await client.list_schedules(spec.cluster.name)
            if any(s.id == schedule_id for s in listed):
                raise
            message = f"{what} was already gone from cluster {spec.cluster.name}"
        else:
            message = f"deleted {what} from cluster {spec.cluster.name}"
    except OpsCenterError as exc:
        retry_at = ctx.backoff.failed(key, version=(generation, ctx.clients.fingerprint(client)),
                                      now=now, transient=exc.transient, base=ctx.backoff_base,
                                      refused_wait=DELETE_REFUSED_RECHECK)
        message = f"{what} is not deleted yet: {exc}"
        if isinstance(exc, OpsCenterNotFound):
            message += (f"; OpsCenter does not know cluster {spec.cluster.name}: fix "
                        "spec.cluster.name, or remove the finalizer to give up on it")
        log.info("schedule %s/%s: %s", namespace, name, message)
        ctx.events.warning(body, reason="DeleteFailed", message=message)
        raise RetryLater(message, delay=max((retry_at - now).total_seconds(), 1.0)) from None

    ctx.backoff.succeeded(key)
    log.info("schedule %s/%s: %s", namespace, name, message)
    ctx.events.info(body, reason="ScheduleDeleted", message=message)
