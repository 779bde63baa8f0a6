"""BackupSchedule on the real control plane: when runs fire, and when they never do."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from support.processes import Process, Sidecar, wait_for
from support.resources import (
    condition,
    create,
    event_messages,
    events,
    get,
    rfc3339,
    run_manifest,
    runs,
    schedule_manifest,
    sidecar_cluster,
    soon,
    status,
    terminal,
)

pytestmark = pytest.mark.integration
SCHEDULES = "backupschedules"


def test_a_schedule_created_after_its_first_run_never_fires_a_past_tick(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    first = datetime(2012, 5, 3, 18, 0, tzinfo=UTC)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "nightly", cluster=sidecar_cluster(endpoints=[node.endpoint]), first=first,
        interval=1, unit="days"))

    found = wait_for(lambda: status(custom, namespace, SCHEDULES, "nightly").get("nextRun"),
                     timeout=30, what="nextRun")
    next_run = datetime.fromisoformat(found.replace("Z", "+00:00"))
    now = datetime.now(UTC)
    assert now < next_run <= now + timedelta(days=1)
    assert next_run.strftime("%H:%M:%S") == "18:00:00"
    observed = status(custom, namespace, SCHEDULES, "nightly")
    assert observed["nextRunLocal"] == next_run.strftime("%Y-%m-%d 18:00:00 GMT")
    assert observed["every"] == "1 days"
    assert condition(observed, "Ready")["status"] == "True"
    time.sleep(3)
    assert runs(custom, namespace) == []
    assert node.nodetool_calls("snapshot") == 0


def test_a_tick_fires_one_run_that_becomes_the_last_run(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    nodes = [sidecars(), sidecars()]
    tick = soon(4)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "once", cluster=sidecar_cluster(endpoints=[n.endpoint for n in nodes]), first=tick,
        jobParams={"keyspaces": ["test"]}))
    run_name = f"once-{tick:%Y%m%d-%H%M}"

    done = wait_for(lambda: terminal(custom, namespace, run_name), timeout=60,
                    what=f"run {run_name} to finish")
    assert done["phase"] == "Succeeded"
    assert done["nodesSucceeded"] == "2/2"
    assert sorted(n["node"] for n in done["nodes"]) == sorted(n.host for n in nodes)
    assert list(done["keyspaces"]) == ["test"]
    assert done["keyspaces"]["test"]["size"] == done["sizeBytes"] > 0
    run = get(custom, namespace, "backupruns", run_name)
    assert run is not None
    assert run["metadata"]["labels"] == {
        "backups.cassandra.dev/schedule": "once",
        "backups.cassandra.dev/cluster": "Test_Cluster",
        "keyspace.backups.cassandra.dev/test": "true",
    }
    assert run["spec"]["deletionPolicy"] == "Delete"
    assert "ownerReferences" not in run["metadata"]
    for node in nodes:
        assert len(node.snapshot_dirs(run_name)) == 2, "one folder per table of keyspace test"

    observed = wait_for(lambda: status(custom, namespace, SCHEDULES, "once").get("lastRun")
                        and status(custom, namespace, SCHEDULES, "once"),
                        timeout=20, what="lastRun")
    assert observed["lastRun"] == rfc3339(tick)
    assert observed["lastRunName"] == run_name
    assert observed["lastScheduleTime"] == rfc3339(tick)
    assert observed.get("nextRun") is None, "a one-time job has no next run"
    assert f"created BackupRun {run_name} for tick {rfc3339(tick)}" in \
        event_messages(core, namespace, "once", "RunCreated")


def test_a_partially_failed_run_is_not_the_last_run(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    good = [sidecars(), sidecars()]
    broken = sidecars(nodetool_env={"FAKE_NODETOOL_FAIL": "error: disk /data is full"})
    tick = soon(4)
    endpoints = [n.endpoint for n in [*good, broken]]
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "partial", cluster=sidecar_cluster(endpoints=endpoints), first=tick))
    run_name = f"partial-{tick:%Y%m%d-%H%M}"

    done = wait_for(lambda: terminal(custom, namespace, run_name), timeout=60, what="run")
    assert done["phase"] == "PartiallyFailed"
    by_node = {n["node"]: n for n in done["nodes"]}
    assert by_node[broken.host]["phase"] == "Failed"
    assert "disk /data is full" in by_node[broken.host]["error"]
    assert "500" in by_node[broken.host]["error"]
    assert all(by_node[n.host]["phase"] == "Succeeded" for n in good)
    def labels() -> dict[str, str]:
        run = get(custom, namespace, "backupruns", run_name) or {}
        return dict(run.get("metadata", {}).get("labels") or {})

    # A run over every keyspace is labelled with those its nodes took, once it ends.
    wait_for(lambda: "keyspace.backups.cassandra.dev/test" in labels(), timeout=20,
             what="keyspace labels")
    assert labels() == {
        "backups.cassandra.dev/schedule": "partial",
        "backups.cassandra.dev/cluster": "Test_Cluster",
        **{f"keyspace.backups.cassandra.dev/{ks}": "true"
           for ks in ("system", "system_schema", "test")},
    }
    time.sleep(2)
    observed = status(custom, namespace, SCHEDULES, "partial")
    assert observed.get("lastRun") is None
    assert observed["lastScheduleTime"] == rfc3339(tick)


def test_unsuspending_does_not_fire_missed_ticks(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    first = datetime.now(UTC) - timedelta(hours=3)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "paused", cluster=sidecar_cluster(endpoints=[node.endpoint]), first=first,
        interval=1, unit="minutes", suspend=True))
    suspended = wait_for(
        lambda: condition(status(custom, namespace, SCHEDULES, "paused"), "Suspended"),
        timeout=30, what="Suspended condition")
    assert suspended["status"] == "True"
    assert status(custom, namespace, SCHEDULES, "paused").get("nextRun") is None

    custom.patch_namespaced_custom_object("backups.cassandra.dev", "v1alpha1", namespace,
                                          SCHEDULES, "paused", {"spec": {"suspend": False}})
    found = wait_for(lambda: status(custom, namespace, SCHEDULES, "paused").get("nextRun"),
                     timeout=30, what="nextRun after unsuspend")
    assert datetime.fromisoformat(found.replace("Z", "+00:00")) > datetime.now(UTC)
    time.sleep(2)
    assert runs(custom, namespace) == [], "no run for any of the 180 ticks missed while paused"


def test_operator_down_across_many_ticks_fires_one_catch_up_run(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, start_operator: Callable[..., Process],
        sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    first = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "minutely", cluster=sidecar_cluster(endpoints=[node.endpoint]), first=first,
        interval=1, unit="minutes", startingDeadlineSeconds=600))
    operator = start_operator()
    wait_for(lambda: status(custom, namespace, SCHEDULES, "minutely").get("nextRun"),
             timeout=30, what="nextRun")
    operator.stop()

    # What status would say had the operator stopped ten minutes ago, right after a tick.
    now = datetime.now(UTC)
    last_tick = now.replace(second=0, microsecond=0) - timedelta(minutes=10)
    custom.patch_namespaced_custom_object_status(
        "backups.cassandra.dev", "v1alpha1", namespace, SCHEDULES, "minutely",
        {"status": {"armedAt": rfc3339(last_tick - timedelta(minutes=1)),
                    "lastScheduleTime": rfc3339(last_tick)}})
    start_operator()

    wait_for(lambda: runs(custom, namespace), timeout=30, what="the catch-up run")
    time.sleep(3)
    ticks = sorted(datetime.strptime(r["metadata"]["name"], "minutely-%Y%m%d-%H%M").replace(
        tzinfo=UTC) for r in runs(custom, namespace))
    # The first run is the catch-up; a minute may turn meanwhile and fire its own tick.
    newest = ticks[0]
    assert newest >= now.replace(second=0, microsecond=0), "the most recent tick, not an old one"
    assert ticks == [newest + timedelta(minutes=k) for k in range(len(ticks))]
    assert len(ticks) <= 2
    missed_count = int((newest - last_tick) / timedelta(minutes=1)) - 1
    assert missed_count >= 9
    missed = event_messages(core, namespace, "minutely", "MissedTicks")
    assert missed == [f"{missed_count} ticks missed while the operator was not running; "
                      f"running the newest, {rfc3339(newest)}, once"]


def test_a_missed_tick_past_the_starting_deadline_is_skipped(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, start_operator: Callable[..., Process],
        sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    first = (datetime.now(UTC) - timedelta(days=3, hours=-1)).replace(microsecond=0)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "daily", cluster=sidecar_cluster(endpoints=[node.endpoint]), first=first,
        interval=1, unit="days", startingDeadlineSeconds=60))
    operator = start_operator()
    wait_for(lambda: status(custom, namespace, SCHEDULES, "daily").get("nextRun"),
             timeout=30, what="nextRun")
    operator.stop()
    custom.patch_namespaced_custom_object_status(
        "backups.cassandra.dev", "v1alpha1", namespace, SCHEDULES, "daily",
        {"status": {"armedAt": rfc3339(first), "lastScheduleTime": rfc3339(first)}})
    start_operator()

    missed = wait_for(lambda: [m for r, m in events(core, namespace, "daily")
                               if r == "MissedTicks"], timeout=30, what="MissedTicks event")
    late = first + timedelta(days=2)
    assert missed == [f"2 ticks missed while the operator was not running; the newest, "
                      f"{rfc3339(late)}, is past startingDeadlineSeconds and is skipped"]
    time.sleep(2)
    assert runs(custom, namespace) == []
    assert status(custom, namespace, SCHEDULES, "daily")["lastScheduleTime"] == rfc3339(late)


def test_forbid_skips_a_tick_while_a_run_is_active(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    slow = sidecars(delay=30)
    cluster = sidecar_cluster(endpoints=[slow.endpoint])
    blocker = run_manifest("blocker", cluster=cluster)
    blocker["metadata"]["labels"] = {"backups.cassandra.dev/schedule": "forbid"}
    create(custom, namespace, "backupruns", blocker)
    wait_for(lambda: status(custom, namespace, "backupruns", "blocker").get("phase") ==
             "Running", timeout=30, what="blocker running")

    tick = soon(3)
    create(custom, namespace, SCHEDULES, schedule_manifest("forbid", cluster=cluster,
                                                           first=tick))
    skipped = wait_for(lambda: [m for r, m in events(core, namespace, "forbid")
                                if r == "TickSkipped"], timeout=30, what="TickSkipped")
    assert skipped == [f"tick {rfc3339(tick)} skipped: run blocker is still active "
                       "(concurrencyPolicy Forbid)"]
    assert [r["metadata"]["name"] for r in runs(custom, namespace)] == ["blocker"]
    assert status(custom, namespace, SCHEDULES, "forbid")["lastScheduleTime"] == rfc3339(tick)


def test_bad_time_zone_and_missing_secret_are_conditions_and_others_keep_working(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    first = datetime(2026, 1, 1, tzinfo=UTC)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "zone", cluster=sidecar_cluster(endpoints=[node.endpoint]), first=first, interval=1,
        unit="days", timezone="Mars/Olympus_Mons"))
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "secretless", cluster=sidecar_cluster(endpoints=[node.endpoint],
                                              token_secret="missing"),
        first=first, interval=1, unit="days"))
    tick = soon(4)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "healthy", cluster=sidecar_cluster(endpoints=[node.endpoint]), first=tick))

    zone = wait_for(lambda: condition(status(custom, namespace, SCHEDULES, "zone"), "Ready"),
                    timeout=30, what="Ready on zone")
    assert (zone["status"], zone["reason"]) == ("False", "InvalidSchedule")
    assert zone["message"].startswith("spec.timezone: ")
    assert "Mars/Olympus_Mons" in zone["message"]
    secretless = wait_for(
        lambda: condition(status(custom, namespace, SCHEDULES, "secretless"), "Ready"),
        timeout=30, what="Ready on secretless")
    assert (secretless["status"], secretless["reason"]) == ("False", "SecretNotFound")
    assert "missing" in secretless["message"]
    assert secretless["message"] in event_messages(core, namespace, "secretless",
                                                    "SecretNotFound")

    done = wait_for(lambda: terminal(custom, namespace, f"healthy-{tick:%Y%m%d-%H%M}"),
                    timeout=60, what="the healthy schedule's run")
    assert done["phase"] == "Succeeded"
    assert len(event_messages(core, namespace, "zone", "InvalidSchedule")) == 1, \
        "an invalid spec is reported once, not looped"


def test_editing_a_schedule_never_fires_the_tick_the_edit_put_in_the_past(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    create(custom, namespace, SCHEDULES, schedule_manifest(
        "edited", cluster=sidecar_cluster(endpoints=[node.endpoint]), first=tomorrow,
        interval=1, unit="days"))
    wait_for(lambda: status(custom, namespace, SCHEDULES, "edited").get("nextRun"),
             timeout=30, what="nextRun")

    # The edit makes today's tick, two minutes ago, well within startingDeadlineSeconds.
    moved = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0)
    custom.patch_namespaced_custom_object(
        "backups.cassandra.dev", "v1alpha1", namespace, SCHEDULES, "edited",
        {"spec": {"firstRunDate": "2012-05-03", "firstRunTime": f"{moved:%H:%M:%S}"}})
    expected = rfc3339(moved + timedelta(days=1))
    wait_for(lambda: status(custom, namespace, SCHEDULES, "edited").get("nextRun") == expected,
             timeout=30, what=f"nextRun {expected}")
    time.sleep(2)
    assert runs(custom, namespace) == []
    assert status(custom, namespace, SCHEDULES, "edited")["observedGeneration"] == 2
