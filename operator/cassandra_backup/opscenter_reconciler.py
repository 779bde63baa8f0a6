"""BackupSchedule and BackupRun against a DataStax OpsCenter (the opscenter backend).

With this backend OpsCenter is the scheduler. The operator keeps exactly one OpsCenter
job schedule per BackupSchedule and mirrors what OpsCenter reports: ``next_run`` and
``last_run`` into the schedule's status, and every backup OpsCenter took for it into
a BackupRun owned by the schedule, whose status comes from the backup listing only.
An ad hoc BackupRun with this backend asks OpsCenter for one backup now.

What the operator remembers lives in status, so a restart picks up where it was:

- ``status.id`` is the OpsCenter job schedule id, written the moment the POST answers.
- ``status.observedGeneration`` is the generation OpsCenter last accepted; a newer
  generation is sent with PUT.
- The ``Registered`` condition says whether OpsCenter holds the schedule: ``True``
  with an id; ``Unknown`` while a POST is out or after one whose answer was lost, so
  the next attempt first looks for a schedule with exactly these fields and adopts
  it instead of posting a second one; ``False`` when there is none.

Failures are conditions and Events. A refusal (4xx) is not asked again until the
spec changes or ``REFUSED_RECHECK`` has passed; a 5xx, a timeout or a garbled answer
is retried with exponential back-off. That memory of failures is kept in the
process: after a restart each failing schedule is tried once more, which is no storm.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from cassandra_backup import models, schedule
from cassandra_backup.conditions import condition, set_condition
from cassandra_backup.kube import RUNS, SCHEDULES, EventSink, KubeApi, SecretMissing
from cassandra_backup.metrics import Metrics
from cassandra_backup.opscenter import mapping
from cassandra_backup.opscenter.client import Credentials, OpsCenterClient
from cassandra_backup.opscenter.errors import (
    OpsCenterError,
    OpsCenterNotFound,
    OpsCenterRefused,
    OpsCenterUnavailable,
)
from cassandra_backup.runs import overall_phase, succeeded_count
from cassandra_backup.schedule_reconciler import Wake, every
from cassandra_backup.status import StatusDraft
from cassandra_backup.timefmt import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

BACKUP_ANNOTATION = f"{models.GROUP}/opscenter-backup"
REGISTERED = "Registered"
REQUESTED = "Requested"
ADHOC = "adhoc"
DEFAULT_TIMEOUT = 30.0
SECRET_RECHECK = timedelta(seconds=30)
REFUSED_RECHECK = timedelta(minutes=10)
DELETE_REFUSED_RECHECK = timedelta(minutes=1)
MAX_BACKOFF = timedelta(minutes=10)
MAX_BACKOFF_BASE = timedelta(seconds=10)
# OpsCenter's clock and the operator's may disagree; an ad hoc backup found in the
# listing counts as this run's when taken at most this long before the run started.
CLOCK_SLACK = timedelta(minutes=1)
MAX_CLIENTS = 64



class RetryLater(Exception):
    """OpsCenter could not be reached or refused for now; try again after ``delay`` s."""

    def __init__(self, message: str, *, delay: float = 30.0) -> None:
        super().__init__(message)
        self.delay = delay


class InvalidCA(Exception):
    """The caSecret holds nothing an SSL context can load as a CA certificate."""


Version = tuple[int, str]


@dataclass
class _Failure:
    version: Version
    attempts: int
    retry_at: datetime


class Backoff:
    """When each resource may talk to OpsCenter again after a failure.

    A refusal waits ``REFUSED_RECHECK``; anything transient waits ``base * 2**n`` (n
    failures so far) with jitter, at most ``MAX_BACKOFF``. A new version (the spec's
    generation, and a fingerprint of the Secrets in use) lifts the wait at once: someone
    changed something, so it is worth asking again.
    """

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], _Failure] = {}

    def blocked_until(self, key: tuple[str, str], *, version: Version,
                      now: datetime) -> datetime | None:
        failure = self._failures.get(key)
        if failure is None or failure.version != version or now >= failure.retry_at:
            return None
        return failure.retry_at

    def failed(self, key: tuple[str, str], *, version: Version, now: datetime, transient: bool,
               base: timedelta, refused_wait: timedelta = REFUSED_RECHECK) -> datetime:
        previous = self._failures.get(key)
        attempts = previous.attempts + 1 if previous and previous.version == version else 1
        if transient:
            ceiling = min(MAX_BACKOFF, base * (1 << min(attempts - 1, 16)))
            wait = ceiling * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not a secret
        else:
            wait = refused_wait
        retry_at = now + wait
        self._failures[key] = _Failure(version=version, attempts=attempts, retry_at=retry_at)
        return retry_at

    def attempts(self, key: tuple[str, str]) -> int:
        failure = self._failures.get(key)
        return failure.attempts if failure else 0

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)


ClientFactory = Callable[..., OpsCenterClient]


class OpsCenterClients:
    """One client per OpsCenter, login and CA, kept so that a session outlives a poll.

    The Secrets are read on every use, so a rotated password or CA takes effect at the
    next poll (with a client of its own).
    """

    def __init__(self, factory: ClientFactory = OpsCenterClient) -> None:
        self._factory = factory
        self._clients: dict[tuple[str, ...], OpsCenterClient] = {}
        self._fingerprints: dict[int, str] = {}

    async def get(self, api: KubeApi, *, namespace: str, backend: models.OpsCenterBackend,
                  request_timeout: float) -> OpsCenterClient:
        credentials = None
        if backend.credentialsSecret is not None:
            data = await api.secret_data(namespace=namespace, name=backend.credentialsSecret.name)
            for secret_key in ("username", "password"):
                if secret_key not in data:
                    raise SecretMissing(namespace=namespace, name=backend.credentialsSecret.name,
                                        key=secret_key)
            credentials = Credentials(username=data["username"].strip(),
                                      password=data["password"].strip())
        ca = None
        if backend.caSecret is not None:
            ca = await api.secret_value(namespace=namespace, name=backend.caSecret.name,
                                        key=backend.caSecret.key)
        key = (backend.url, credentials.username if credentials else "",
               _digest(credentials.password if credentials else ""), _digest(ca or ""),
               str(request_timeout))
        client = self._clients.get(key)
        if client is None:
            while len(self._clients) >= MAX_CLIENTS:   # rotated Secrets leave old ones behind
                oldest = next(iter(self._clients))
                evicted = self._clients.pop(oldest)
                self._fingerprints.pop(id(evicted), None)
                await evicted.aclose()
            verify: bool | ssl.SSLContext = True
            if ca is not None:
                try:
                    verify = ssl.create_default_context(cadata=ca)
                except (ssl.SSLError, ValueError):
                    raise InvalidCA("holds no PEM certificate that can serve as a CA") from None
            client = self._factory(base_url=backend.url, credentials=credentials, verify=verify,
                                   timeout=request_timeout)
            self._clients[key] = client
            self._fingerprints[id(client)] = _digest("\n".join(key))
        return client

    def fingerprint(self, client: OpsCenterClient) -> str:
        """Stands for the URL, login and CA the client was made for; never shows them."""
        return self._fingerprints.get(id(client), "")

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class OpsCenterContext:
    api: KubeApi
    events: EventSink
    clock: Callable[[], datetime]
    metrics: Metrics
    poll_interval: timedelta
    request_timeout: float = DEFAULT_TIMEOUT
    clients: OpsCenterClients = field(default_factory=OpsCenterClients)
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def backoff_base(self) -> timedelta:
        return min(self.poll_interval, MAX_BACKOFF_BASE)

    async def client(self, *, namespace: str,
                     backend: models.OpsCenterBackend) -> OpsCenterClient:
        return await self.clients.get(self.api, namespace=namespace, backend=backend,
                                      request_timeout=self.request_timeout)


# Schedules.


async def reconcile_schedule(ctx: OpsCenterContext, body: dict[str, Any]) -> Wake:
    """Make OpsCenter hold the schedule as specified, then mirror what it reports."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    now = ctx.clock()
    generation = int(meta.get("generation", 0))

    async def write(changes: dict[str, Any]) -> None:
        await ctx.api.patch_status(plural=SCHEDULES, namespace=namespace, name=name,
                                   status=changes)

    status = StatusDraft(dict(body.get("status") or {}), now=now, generation=generation,
                         write=write)

    def not_ready(reason: str, message: str) -> None:
        status.set(nextRun=None, nextRunLocal=None)
        if status.condition("Ready", "False", reason, message):
            log.info("schedule %s/%s: not ready: %s", namespace, name, message)
            ctx.events.warning(body, reason=reason, message=message)

    try:
        spec = models.BackupScheduleSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        not_ready("InvalidSpec", f"spec.{where}: {error['msg']}")
        await status.save()
        return Wake(None)
    backend = spec.cluster.opscenter
    if backend is None:
        return Wake(None)
    status.set(backend="opscenter", every=every(spec))
    try:
        schedule.Recurrence.parse(
            first_run_date=spec.firstRunDate, first_run_time=spec.firstRunTime,
            timezone=spec.timezone, interval=spec.interval, interval_unit=spec.intervalUnit)
    except schedule.InvalidSchedule as exc:
        not_ready("InvalidSchedule", f"spec.{exc}")
        await status.save()
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
        mirrors = {tag: run for run in runs if (tag := _annotation(run)) is not None}
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
                if existing is None or _annotation(existing) != backup.tag:
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


def _annotation(run: dict[str, Any]) -> str | None:
    value = (run["metadata"].get("annotations") or {}).get(BACKUP_ANNOTATION)
    return value if isinstance(value, str) and value else None


def mirror_names(schedule_name: str, backup: mapping.Backup) -> list[str]:
    """Names to try for the run of a backup: the tick form first, then with seconds."""
    return [schedule.run_name(schedule_name, backup.time),
            f"{schedule_name}-{backup.time:%Y%m%d-%H%M%S}"]


def mirror_body(*, schedule_body: dict[str, Any], spec: models.BackupScheduleSpec,
                backup: mapping.Backup, name: str) -> dict[str, Any]:
    """The BackupRun that stands for one backup OpsCenter took for a schedule.

    It is owned by the schedule, and labelled so that ``-l`` selects by schedule,
    cluster and keyspace. Deleting it leaves the snapshot to OpsCenter (Retain).
    """
    meta = schedule_body["metadata"]
    labels = {models.SCHEDULE_LABEL: meta["name"], models.CLUSTER_LABEL: spec.cluster.name}
    labels.update({models.KEYSPACE_LABEL_PREFIX + ks: "true" for ks in backup.keyspaces})
    run_spec: dict[str, Any] = {
        "cluster": spec.cluster.model_dump(mode="json", exclude_none=True),
        "keyspaces": {ks: {"nodes": entry.nodes} for ks, entry in backup.keyspaces.items()},
        "runDeadlineSeconds": spec.runDeadlineSeconds,
        "deletionPolicy": "Retain",
    }
    if _valid_tag(backup.tag):
        run_spec["tag"] = backup.tag
    return {
        "apiVersion": models.API_VERSION,
        "kind": "BackupRun",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {models.SCHEDULED_AT_ANNOTATION: rfc3339(backup.time),
                            BACKUP_ANNOTATION: backup.tag},
            "ownerReferences": [{
                "apiVersion": models.API_VERSION, "kind": "BackupSchedule",
                "name": meta["name"], "uid": meta["uid"], "controller": True,
            }],
        },
        "spec": run_spec,
    }


def _valid_tag(tag: str) -> bool:
    """Whether the CRD admits ``tag`` as spec.tag (status keeps it either way)."""
    return (re.fullmatch(models.TAG_PATTERN, tag) is not None and tag not in (".", "..")
            and not tag.startswith("-"))


def mirror_status(backup: mapping.Backup, *, now: datetime) -> dict[str, Any]:
    """A mirrored run's status, from OpsCenter's listing entry alone."""
    taken = rfc3339(backup.time)
    nodes = [models.NodeResult(node=node, phase="Succeeded", startTime=backup.time,
                               completionTime=backup.time) for node in backup.nodes]
    message = (f"OpsCenter backup {backup.tag}: {len(backup.keyspaces)} keyspaces on "
               f"{len(nodes)} nodes")
    return {
        "phase": "Succeeded",
        "tag": backup.tag,
        "backupId": backup.tag,
        "startTime": taken,
        "completionTime": taken,
        "nodes": [_dump(node) for node in nodes],
        "nodesSucceeded": succeeded_count(nodes),
        "keyspaces": {ks: entry.model_dump(mode="json", exclude_none=True)
                      for ks, entry in sorted(backup.keyspaces.items())},
        "sizeBytes": backup.size_bytes,
        "conditions": set_condition([], type="Complete", status="True", reason="Succeeded",
                                    message=message, now=now),
    }


def _dump(result: models.NodeResult) -> dict[str, Any]:
    return result.model_dump(mode="json", exclude_none=True)


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


# Runs.


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
    if _annotation(body) is not None:
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
        tag = _annotation(self.body)
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
            keyspaces = {ks: entry.model_dump(mode="json", exclude_none=True)
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
            "completionTime": rfc3339(finished), "nodes": [_dump(r) for r in results],
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
