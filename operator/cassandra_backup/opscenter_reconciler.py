"""The opscenter backend's entry points, as the kopf wiring calls them.

BackupSchedule and BackupRun against a DataStax OpsCenter: with this backend OpsCenter
is the scheduler, and the operator keeps one OpsCenter job schedule per BackupSchedule
and mirrors what OpsCenter reports. The work lives in ``cassandra_backup.opscenter``:
``schedules`` keeps the job schedules, ``mirror`` builds the runs that stand for the
backups OpsCenter took, ``runs`` takes ad hoc backups, and ``context`` holds what they
share. This module names the few things the handlers need, and nothing else.
"""

from cassandra_backup.opscenter.context import OpsCenterContext, RetryLater
from cassandra_backup.opscenter.runs import execute_run
from cassandra_backup.opscenter.schedules import delete_schedule, reconcile_schedule

__all__ = ["OpsCenterContext", "RetryLater", "delete_schedule", "execute_run",
           "reconcile_schedule"]
