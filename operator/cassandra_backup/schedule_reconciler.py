"""Turns a BackupSchedule's ticks into BackupRuns (sidecar backend).

``reconcile_schedule`` is called when the schedule changes and when its next tick is
due; it returns when it wants to be called again. All time arithmetic is in
``schedule``; this module reads and writes Kubernetes and reports decisions.

Ticks count from ``status.armedAt``, the moment the schedule was created, last edited
or unsuspended, so none of those ever fires a tick from the past. Ticks missed while
the operator was away are ticks after ``status.lastScheduleTime``: on return, only
the newest of them runs, and only within ``startingDeadlineSeconds``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from cassandra_backup import models, schedule
from cassandra_backup.kube import SCHEDULES, EventSink, KubeApi, SecretMissing
from cassandra_backup.metrics import Metrics
from cassandra_backup.runs import RunRecord, age, expired_runs
from cassandra_backup.status import StatusDraft
from cassandra_backup.timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

SECRET_RECHECK = timedelta(seconds=30)


@dataclass(frozen=True)
class Wake:
    """When the schedule wants its next reconcile; ``None`` means on its next change."""

    at: datetime | None


@dataclass(frozen=True)
class ScheduleContext:
    api: KubeApi
    events: EventSink
    clock: Callable[[], datetime]
    metrics: Metrics


def every(spec: models.BackupScheduleSpec) -> str:
    return "once" if spec.interval == -1 else f"{spec.interval} {spec.intervalUnit}"


def scheduled_at(run: dict[str, Any]) -> datetime:
    """The tick a run was made for; a hand-written run counts from its creation."""
    meta = run["metadata"]
    annotated = parse_rfc3339((meta.get("annotations") or {}).get(
        models.SCHEDULED_AT_ANNOTATION))
    created = parse_rfc3339(meta.get("creationTimestamp"))
    return annotated or created or datetime.min


def is_active(run: dict[str, Any], *, now: datetime) -> bool:
    """Not yet terminal, and not past its deadline (a stuck run blocks nothing forever)."""
    status = run.get("status") or {}
    if status.get("phase") in models.TERMINAL_PHASES:
        return False
    started = parse_rfc3339(status.get("startTime")) or parse_rfc3339(
        run["metadata"].get("creationTimestamp"))
    deadline = int((run.get("spec") or {}).get("runDeadlineSeconds", 3600))
    return started is None or now <= started + timedelta(seconds=deadline)


def run_summary(runs: list[dict[str, Any]], *, status: dict[str, Any],
                now: datetime) -> dict[str, Any]:
    """lastRun, lastRunName and activeRuns as derived from the schedule's runs."""
    succeeded = [run for run in runs if (run.get("status") or {}).get("phase") == "Succeeded"]
    summary: dict[str, Any] = {
        "activeRuns": sorted(run["metadata"]["name"] for run in runs if is_active(run, now=now)),
    }
    if succeeded:
        newest = max(succeeded, key=scheduled_at)
        recorded = parse_rfc3339(status.get("lastRun"))
        if recorded is None or scheduled_at(newest) >= recorded:
            summary["lastRun"] = rfc3339(scheduled_at(newest))
            summary["lastRunName"] = newest["metadata"]["name"]
    return summary


def run_body(*, schedule_meta: dict[str, Any], spec: models.BackupScheduleSpec,
             tick: datetime) -> dict[str, Any]:
    name = schedule.run_name(schedule_meta["name"], tick)
    labels = {models.SCHEDULE_LABEL: schedule_meta["name"],
              models.CLUSTER_LABEL: spec.cluster.name}
    labels.update({models.KEYSPACE_LABEL_PREFIX + ks: "true" for ks in spec.jobParams.keyspaces})
    return {
        "apiVersion": models.API_VERSION,
        "kind": "BackupRun",
        "metadata": {
            "name": name,
            "namespace": schedule_meta["namespace"],
            "labels": labels,
            "annotations": {models.SCHEDULED_AT_ANNOTATION: rfc3339(tick)},
        },
        "spec": {
            "cluster": spec.cluster.wire(),
            "keyspaces": {ks: {} for ks in spec.jobParams.keyspaces},
            "tag": name,
            "runDeadlineSeconds": spec.runDeadlineSeconds,
            "deletionPolicy": "Delete",
        },
    }


class ScheduleDraft(StatusDraft):
    """A schedule's status draft that checks the spec and reports each new reason it is
    not ready once, as a condition and an Event (never in a loop). Both backends use it.
    """

    def __init__(self, *, api: KubeApi, events: EventSink, body: dict[str, Any],
                 now: datetime) -> None:
        meta = body["metadata"]
        self.body, self.api, self.events = body, api, events
        self.namespace, self.name = meta["namespace"], meta["name"]
        super().__init__(dict(body.get("status") or {}), now=now,
                         generation=int(meta.get("generation", 0)), write=self._patch)

    async def _patch(self, changes: dict[str, Any]) -> None:
        await self.api.patch_status(plural=SCHEDULES, namespace=self.namespace, name=self.name,
                                    status=changes)

    def not_ready(self, reason: str, message: str) -> None:
        self.set(nextRun=None, nextRunLocal=None)
        if self.condition("Ready", "False", reason, message):
            log.info("schedule %s/%s: not ready: %s", self.namespace, self.name, message)
            self.events.warning(self.body, reason=reason, message=message)

    def parse(self) -> tuple[models.BackupScheduleSpec, schedule.Recurrence] | None:
        """The spec and its ticks; None (and Ready=False) when either cannot be read."""
        try:
            spec = models.BackupScheduleSpec.model_validate(self.body.get("spec") or {})
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            self.not_ready("InvalidSpec", f"spec.{field}: {error['msg']}")
            return None
        self.set(backend=spec.cluster.backend, every=every(spec))
        try:
            recurrence = schedule.Recurrence.parse(
                first_run_date=spec.firstRunDate, first_run_time=spec.firstRunTime,
                timezone=spec.timezone, interval=spec.interval,
                interval_unit=spec.intervalUnit)
        except schedule.InvalidSchedule as exc:
            self.not_ready("InvalidSchedule", f"spec.{exc}")
            return None
        return spec, recurrence


async def reconcile_schedule(ctx: ScheduleContext, body: dict[str, Any]) -> Wake:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    now = ctx.clock()
    status = ScheduleDraft(api=ctx.api, events=ctx.events, body=body, now=now)
    generation = int(meta.get("generation", 0))

    parsed = status.parse()
    if parsed is None:
        await status.save()
        return Wake(None)
    spec, recurrence = parsed

    sidecars = spec.cluster.sidecars
    if sidecars is not None:
        try:
            await ctx.api.secret_value(namespace=namespace, name=sidecars.tokenSecret.name,
                                       key=sidecars.tokenSecret.key)
        except SecretMissing as exc:
            status.not_ready("SecretNotFound", f"spec.cluster.sidecars.tokenSecret: {exc}")
            await status.save()
            return Wake(now + SECRET_RECHECK)

    if status.get("observedGeneration") != generation or status.get("armedAt") is None:
        status.set(armedAt=rfc3339(now), observedGeneration=generation)
    runs = await ctx.api.list_runs(namespace=namespace,
                                   selector=f"{models.SCHEDULE_LABEL}={name}")
    status.set(**run_summary(runs, status=status.current, now=now))

    if spec.suspend:
        status.set(nextRun=None, nextRunLocal=None)
        status.condition("Suspended", "True", "Suspended", "spec.suspend is true")
        status.condition("Ready", "True", "Suspended", "suspended: no runs fire")
        ctx.metrics.next_tick(namespace=namespace, schedule=name, tick=None)
        await status.save()
        return Wake(None)
    status.condition("Suspended", "False", "Active", "spec.suspend is false")

    deadline = (timedelta(seconds=spec.startingDeadlineSeconds)
                if spec.startingDeadlineSeconds is not None else None)
    decision = schedule.decide(
        recurrence, now=now, armed_at=parse_rfc3339(status.get("armedAt")),
        last_schedule_time=parse_rfc3339(status.get("lastScheduleTime")),
        starting_deadline=deadline)

    if decision.missed or decision.late:
        _report_missed(ctx, body, decision)
    if decision.late is not None:
        status.set(lastScheduleTime=rfc3339(decision.late))
    if decision.fire is not None:
        await _fire(ctx, body, spec, decision.fire, runs, status)

    if decision.next_tick is None:
        status.set(nextRun=None, nextRunLocal=None)
        status.condition("Ready", "True", "Completed", "one-time job: no further ticks")
    else:
        status.set(nextRun=rfc3339(decision.next_tick),
                   nextRunLocal=schedule.local_display(recurrence, decision.next_tick))
        status.condition("Ready", "True", "Scheduled",
                         f"next run at {rfc3339(decision.next_tick)}")
    ctx.metrics.next_tick(namespace=namespace, schedule=name, tick=decision.next_tick)
    await status.save()
    return Wake(decision.next_tick)


def _report_missed(ctx: ScheduleContext, body: dict[str, Any],
                   decision: schedule.TickDecision) -> None:
    meta = body["metadata"]
    if decision.fire is not None:
        message = (f"{decision.missed} ticks missed while the operator was not running; "
                   f"running the newest, {rfc3339(decision.fire)}, once")
    else:
        late = rfc3339(decision.late) if decision.late else "?"
        message = (f"{decision.missed} ticks missed while the operator was not running; the "
                   f"newest, {late}, is past startingDeadlineSeconds and is skipped")
    log.info("schedule %s/%s: %s", meta["namespace"], meta["name"], message)
    ctx.events.warning(body, reason="MissedTicks", message=message)


async def _fire(ctx: ScheduleContext, body: dict[str, Any], spec: models.BackupScheduleSpec,
                tick: datetime, runs: list[dict[str, Any]], status: StatusDraft) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status.set(lastScheduleTime=rfc3339(tick))
    run = run_body(schedule_meta=meta, spec=spec, tick=tick)
    run_name = run["metadata"]["name"]
    active = [r["metadata"]["name"] for r in runs
              if is_active(r, now=status.now) and r["metadata"]["name"] != run_name]
    if spec.concurrencyPolicy == "Forbid" and active:
        message = (f"tick {rfc3339(tick)} skipped: run {', '.join(active)} is still active "
                   "(concurrencyPolicy Forbid)")
        log.info("schedule %s/%s: %s", namespace, name, message)
        ctx.events.warning(body, reason="TickSkipped", message=message)
        return
    if await ctx.api.create_run(namespace=namespace, body=run):
        log.info("schedule %s/%s: fired %s for tick %s", namespace, name, run_name, rfc3339(tick))
        ctx.events.info(body, reason="RunCreated",
                        message=f"created BackupRun {run_name} for tick {rfc3339(tick)}")
    else:
        log.info("schedule %s/%s: %s exists already; tick %s is done", namespace, name,
                 run_name, rfc3339(tick))
    status.set(activeRuns=sorted({*status.get("activeRuns"), run_name}))


def keyspace_labels_to_add(run: dict[str, Any]) -> dict[str, str]:
    """Keyspace labels for a run the operator made over every keyspace, once it knows them.

    A run for named keyspaces is labelled when it is created; one over all keyspaces
    learns them from its nodes. Runs someone wrote by hand keep exactly their labels.
    """
    meta = run["metadata"]
    if models.SCHEDULED_AT_ANNOTATION not in (meta.get("annotations") or {}):
        return {}
    labels = meta.get("labels") or {}
    taken = (run.get("status") or {}).get("keyspaces") or {}
    wanted = {models.KEYSPACE_LABEL_PREFIX + keyspace: "true" for keyspace in taken}
    return {key: value for key, value in wanted.items() if labels.get(key) != value}


async def after_run(ctx: ScheduleContext, run: dict[str, Any], schedule_name: str) -> None:
    """A run of the schedule ended: label it, refresh lastRun and activeRuns, then apply
    retention."""
    namespace = run["metadata"]["namespace"]
    labels = keyspace_labels_to_add(run)
    if labels:
        await ctx.api.patch_run_labels(namespace=namespace, name=run["metadata"]["name"],
                                       labels=labels)
    body = await ctx.api.get_schedule(namespace=namespace, name=schedule_name)
    if body is None:
        return   # runs outlive their schedule; nothing to refresh
    now = ctx.clock()
    current = dict(body.get("status") or {})
    runs = await ctx.api.list_runs(namespace=namespace,
                                   selector=f"{models.SCHEDULE_LABEL}={schedule_name}")
    summary = run_summary(runs, status=current, now=now)
    changes = {k: v for k, v in summary.items() if current.get(k) != v}
    if changes:
        await ctx.api.patch_status(plural=SCHEDULES, namespace=namespace, name=schedule_name,
                                   status=changes)

    if (run.get("status") or {}).get("phase") != "Succeeded":
        return
    try:
        spec = models.BackupScheduleSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return
    if spec.jobParams.cleanupAge is None:
        return
    max_age = age(spec.jobParams.cleanupAge, spec.jobParams.cleanupAgeUnit)
    # Retention removes runs whose deletionPolicy is Delete (every run a schedule makes);
    # a run someone labelled by hand with Retain asked to be kept, and is.
    records = [RunRecord(name=r["metadata"]["name"], scheduled_at=scheduled_at(r),
                         phase=(r.get("status") or {}).get("phase")) for r in runs
               if (r.get("spec") or {}).get("deletionPolicy") == "Delete"]
    expired = expired_runs(records, now=now, max_age=max_age)
    for record in expired:
        await ctx.api.delete_run(namespace=namespace, name=record.name)
    if expired:
        names = ", ".join(record.name for record in expired)
        message = (f"retention removed {len(expired)} runs older than "
                   f"{spec.jobParams.cleanupAge} {spec.jobParams.cleanupAgeUnit}: {names}")
        log.info("schedule %s/%s: %s", namespace, schedule_name, message)
        ctx.events.info(body, reason="RetentionRemoved", message=message)
