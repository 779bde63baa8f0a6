"""The pure parts of the schedule reconciler: run bodies, activity, summaries, labels."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cassandra_backup import models
from cassandra_backup.schedule_reconciler import (
    is_active,
    keyspace_labels_to_add,
    run_body,
    run_summary,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPEC = models.BackupScheduleSpec.model_validate({
    "cluster": {"name": "Test_Cluster",
                "sidecars": {"endpoints": ["127.0.0.1:9105"],
                             "tokenSecret": {"name": "tok", "key": "token"}}},
    "firstRunDate": "2026-01-01", "firstRunTime": "00:00:00", "interval": 1,
    "intervalUnit": "hours", "jobParams": {"keyspaces": ["shop"]}, "runDeadlineSeconds": 600,
})


def run(name: str, *, phase: str | None = None, at: str = "2026-03-01T11:00:00Z",
        started: str | None = None, deadline: int = 600) -> dict[str, Any]:
    status = {"phase": phase} if phase else {}
    if started:
        status["startTime"] = started
    return {"metadata": {"name": name, "creationTimestamp": at,
                         "annotations": {models.SCHEDULED_AT_ANNOTATION: at}},
            "spec": {"runDeadlineSeconds": deadline}, "status": status}


def test_a_scheduled_run_is_named_for_its_tick_and_deletes_its_snapshots() -> None:
    body = run_body(schedule_meta={"name": "hourly", "namespace": "db"}, spec=SPEC,
                    tick=datetime(2026, 3, 1, 11, 0, tzinfo=UTC))
    assert body["metadata"]["name"] == "hourly-20260301-1100"
    assert body["metadata"]["labels"] == {
        "backups.cassandra.dev/schedule": "hourly",
        "backups.cassandra.dev/cluster": "Test_Cluster",
        "keyspace.backups.cassandra.dev/shop": "true",
    }
    assert body["metadata"]["annotations"] == {
        models.SCHEDULED_AT_ANNOTATION: "2026-03-01T11:00:00Z"}
    assert body["spec"]["tag"] == "hourly-20260301-1100"
    assert body["spec"]["deletionPolicy"] == "Delete"
    assert body["spec"]["keyspaces"] == {"shop": {}}
    assert body["spec"]["runDeadlineSeconds"] == 600
    assert "ownerReferences" not in body["metadata"]


def test_a_run_is_active_until_terminal_or_past_its_deadline() -> None:
    assert is_active(run("fresh", started="2026-03-01T11:55:00Z"), now=NOW)
    assert not is_active(run("done", phase="Succeeded"), now=NOW)
    assert not is_active(run("stuck", phase="Running", started="2026-03-01T11:00:00Z"),
                         now=NOW)


def test_last_run_is_the_newest_fully_successful_run() -> None:
    runs = [run("a", phase="Succeeded", at="2026-03-01T09:00:00Z"),
            run("b", phase="PartiallyFailed", at="2026-03-01T10:00:00Z"),
            run("c", phase="Running", at="2026-03-01T11:59:00Z",
                started="2026-03-01T11:59:00Z")]
    summary = run_summary(runs, status={}, now=NOW)
    assert summary == {"activeRuns": ["c"], "lastRun": "2026-03-01T09:00:00Z",
                       "lastRunName": "a"}


def test_last_run_never_goes_back_when_runs_are_removed() -> None:
    runs = [run("old", phase="Succeeded", at="2026-02-01T00:00:00Z")]
    summary = run_summary(runs, status={"lastRun": "2026-03-01T09:00:00Z"}, now=NOW)
    assert "lastRun" not in summary


def test_keyspace_labels_are_added_to_operator_runs_only() -> None:
    made = run("made", phase="Succeeded")
    made["status"]["keyspaces"] = {"shop": {"nodes": ["n1"]}, "system": {"nodes": ["n1"]}}
    made["metadata"]["labels"] = {"keyspace.backups.cassandra.dev/shop": "true"}
    assert keyspace_labels_to_add(made) == {"keyspace.backups.cassandra.dev/system": "true"}

    written = {**made, "metadata": {"name": "mine", "labels": {}}}
    assert keyspace_labels_to_add(written) == {}
