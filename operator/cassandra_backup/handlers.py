"""kopf wiring: settings, start-up, and one thin handler per event.

Each handler reads the event and calls a plain function from the reconciler modules.
Watch events start one task per schedule and per unfinished run (``tasks.py``); the
tasks call the reconcilers. kopf keeps its own bookkeeping (handler progress, the last
handled spec) in ``status.kopf``, never in annotations, so GitOps tools see no drift on
the objects users wrote.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf

from cassandra_backup import models
from cassandra_backup.kube import RUNS, SCHEDULES, KubeApi, load_config
from cassandra_backup.metrics import Metrics
from cassandra_backup.opscenter import runs as opscenter_runs
from cassandra_backup.opscenter import schedules as opscenter_schedules
from cassandra_backup.opscenter.context import OpsCenterContext, RetryLater
from cassandra_backup.run_reconciler import RunContext, clear_run, execute_run
from cassandra_backup.runs import DEFAULT_CONCURRENCY, NodeError
from cassandra_backup.schedule_reconciler import ScheduleContext, after_run, reconcile_schedule
from cassandra_backup.sidecar_nodes import SidecarTakers
from cassandra_backup.tasks import StopFlag, Tasks
from cassandra_backup.wakeups import Wakeups

log = logging.getLogger(__name__)

FINALIZER = f"{models.GROUP}/snapshots"
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
MAX_EVENT_MESSAGE = 1000


class _QuietEventHandlers(logging.Filter):
    """Drops kopf's per-event success lines of the event handlers: they say nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("'schedule_event' succeeded" in message or "'run_event' succeeded" in message)


def utc_now() -> datetime:
    return datetime.now(UTC)


class KopfEvents:
    """Posts Kubernetes Events through kopf's event poster."""

    def info(self, body: Mapping[str, Any], *, reason: str, message: str) -> None:
        kopf.info(cast(kopf.Body, body), reason=reason, message=message[:MAX_EVENT_MESSAGE])

    def warning(self, body: Mapping[str, Any], *, reason: str, message: str) -> None:
        kopf.warn(cast(kopf.Body, body), reason=reason, message=message[:MAX_EVENT_MESSAGE])


class Operator:
    """Everything the handlers share, built once at start-up and kept in kopf's memo."""

    def __init__(self, *, metrics: Metrics, opscenter_poll_seconds: float = 60.0,
                 opscenter_timeout_seconds: float = 30.0,
                 max_concurrent_nodes: int = DEFAULT_CONCURRENCY) -> None:
        self.api = KubeApi(load_config())
        self.metrics = metrics
        self.wakeups = Wakeups()
        self.schedule_tasks = Tasks("schedule")
        self.run_tasks = Tasks("run")
        events = KopfEvents()
        self.schedules = ScheduleContext(api=self.api, events=events, clock=utc_now,
                                         metrics=metrics)
        self.runs = RunContext(api=self.api, events=events, clock=utc_now,
                               takers=SidecarTakers(self.api), metrics=metrics,
                               on_finished=self._run_finished,
                               concurrency=max_concurrent_nodes)
        self.opscenter = OpsCenterContext(
            api=self.api, events=events, clock=utc_now, metrics=metrics,
            poll_interval=timedelta(seconds=opscenter_poll_seconds),
            request_timeout=opscenter_timeout_seconds)

    async def _run_finished(self, run: dict[str, Any], schedule_name: str) -> None:
        await after_run(self.schedules, run, schedule_name)
        self.wakeups.wake(run["metadata"]["namespace"], schedule_name)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field="status.kopf.progress", touch_field="status.kopf.touch")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.lastHandledConfiguration")
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    if memo.get("namespaced"):
        # Watching named namespaces needs no cluster-wide discovery, and a namespaced
        # Role grants none: kopf would otherwise retry listing namespaces and CRDs.
        settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    metrics: Metrics = memo.get("metrics") or Metrics()
    memo["operator"] = Operator(
        metrics=metrics, opscenter_poll_seconds=memo.get("opscenter_poll_seconds", 60.0),
        opscenter_timeout_seconds=memo.get("opscenter_timeout_seconds", 30.0),
        max_concurrent_nodes=memo.get("max_concurrent_nodes", DEFAULT_CONCURRENCY))


def _operator(memo: kopf.Memo) -> Operator:
    operator: Operator = memo["operator"]
    return operator


async def _supervise(what: str, stop: StopFlag,
                     step: Callable[[], Awaitable[bool]]) -> None:
    """Call ``step`` until it returns False or ``stop`` is set; errors back off and retry.

    A failed API call or an unreachable node must never end a schedule's or a run's
    task: each is retried, and the resource's status says where it got to.
    """
    attempt = 0
    while not stop:
        try:
            again = await step()
        except Exception as exc:
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            log.warning("%s failed (%s: %s); again in %.0f s", what, type(exc).__name__, exc,
                        delay)
            attempt += 1
            await stop.wait(delay)
            continue
        attempt = 0
        if not again:
            return


async def schedule_loop(operator: Operator, namespace: str, name: str, stop: StopFlag) -> None:
    """Sleeps until the schedule's next tick or its next change, then reconciles."""

    async def step() -> bool:
        body = await operator.api.get_schedule(namespace=namespace, name=name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return False
        if _is_opscenter(body):
            wake = await opscenter_schedules.reconcile_schedule(operator.opscenter, body)
        else:
            wake = await reconcile_schedule(operator.schedules, body)
        await operator.wakeups.sleep(namespace, name, until=wake.at, now=utc_now, stopped=stop)
        return True

    await _supervise(f"schedule {namespace}/{name}", stop, step)


async def run_loop(operator: Operator, namespace: str, name: str, stop: StopFlag) -> None:
    """Takes the run to a terminal phase, then ends; a terminal run ends at once."""

    async def step() -> bool:
        body = await operator.api.get_run(namespace=namespace, name=name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return False
        if (body.get("status") or {}).get("phase") in models.TERMINAL_PHASES:
            return False
        if _is_opscenter(body):
            await opscenter_runs.execute_run(operator.opscenter, body)
        else:
            await execute_run(operator.runs, body)
        return True

    await _supervise(f"run {namespace}/{name}", stop, step)


@kopf.on.event(models.GROUP, models.VERSION, SCHEDULES)
async def schedule_event(type: str | None, namespace: str | None, name: str, memo: kopf.Memo,
                         **_: Any) -> None:
    """Every watch event starts the schedule's task if need be, and wakes it."""
    operator = _operator(memo)
    key = (namespace or "", name)
    if type == "DELETED":
        await operator.schedule_tasks.stop(key)
        operator.wakeups.forget(*key)
        return
    operator.schedule_tasks.ensure(key, lambda stop: schedule_loop(operator, *key, stop))
    operator.wakeups.wake(*key)


@kopf.on.event(models.GROUP, models.VERSION, RUNS)
async def run_event(type: str | None, namespace: str | None, name: str, status: kopf.Status,
                    meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """A run that has not finished gets a task (after a restart too: the initial listing
    is a stream of events); a deleted run's task is stopped."""
    operator = _operator(memo)
    key = (namespace or "", name)
    if type == "DELETED" or meta.get("deletionTimestamp"):
        await operator.run_tasks.stop(key)
        return
    if status.get("phase") not in models.TERMINAL_PHASES:
        operator.run_tasks.ensure(key, lambda stop: run_loop(operator, *key, stop))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    operator = _operator(memo)
    await asyncio.gather(operator.schedule_tasks.stop_all(), operator.run_tasks.stop_all())


def _is_opscenter(body: Mapping[str, Any]) -> bool:
    return bool(((body.get("spec") or {}).get("cluster") or {}).get("opscenter"))


def _opscenter_spec(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("cluster") or {}).get("opscenter"))


@kopf.on.delete(models.GROUP, models.VERSION, SCHEDULES, when=_opscenter_spec)
async def opscenter_schedule_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The OpsCenter job schedule goes before the resource does (or is already gone)."""
    try:
        await opscenter_schedules.delete_schedule(_operator(memo).opscenter, dict(body))
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


def _deletes_snapshots(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy") == "Delete"


@kopf.on.delete(models.GROUP, models.VERSION, RUNS, when=_deletes_snapshots)
async def run_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """deletionPolicy Delete: the snapshot leaves every node before the resource goes."""
    try:
        await clear_run(_operator(memo).runs, dict(body))
    except NodeError as exc:
        raise kopf.TemporaryError(str(exc), delay=30) from exc


def run_operator(*, namespaces: list[str], liveness: str, metrics_host: str, metrics_port: int,
                 log_format: str, verbose: bool, opscenter_poll_seconds: float,
                 opscenter_timeout_seconds: float = 30.0,
                 max_concurrent_nodes: int = DEFAULT_CONCURRENCY) -> int:
    """Blocking entry point of ``cassandra-backup-operator run``."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if log_format == "json"
                   else kopf.LogFormat.PLAIN)
    logging.getLogger("kopf.objects").addFilter(_QuietEventHandlers())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    metrics = Metrics()
    if metrics_port:
        metrics.serve(host=metrics_host, port=metrics_port)
    memo = kopf.Memo(metrics=metrics, namespaced=bool(namespaces),
                     opscenter_poll_seconds=opscenter_poll_seconds,
                     opscenter_timeout_seconds=opscenter_timeout_seconds,
                     max_concurrent_nodes=max_concurrent_nodes)
    asyncio.run(kopf.operator(
        standalone=True, clusterwide=not namespaces, namespaces=namespaces,
        liveness_endpoint=liveness or None, memo=memo))
    return 0
