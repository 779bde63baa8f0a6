"""BackupSchedule and BackupRun against a DataStax OpsCenter (the opscenter backend)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cassandra_backup.kube import EventSink, KubeApi
from cassandra_backup.metrics import Metrics
from cassandra_backup.schedule_reconciler import Wake


class RetryLater(Exception):
    """OpsCenter could not be reached or refused for now; try again after ``delay`` s."""

    def __init__(self, message: str, *, delay: float = 30.0) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True)
class OpsCenterContext:
    api: KubeApi
    events: EventSink
    clock: Callable[[], datetime]
    metrics: Metrics
    poll_interval: timedelta


async def reconcile_schedule(ctx: OpsCenterContext, body: dict[str, Any]) -> Wake:
    raise NotImplementedError("the opscenter backend is not built yet")


async def delete_schedule(ctx: OpsCenterContext, body: dict[str, Any]) -> None:
    raise NotImplementedError("the opscenter backend is not built yet")


async def execute_run(ctx: OpsCenterContext, body: dict[str, Any]) -> None:
    raise NotImplementedError("the opscenter backend is not built yet")
