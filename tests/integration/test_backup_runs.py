"""BackupRun on the real control plane, over real sidecar processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from support.fixtures import TOKEN
from support.processes import Process, Sidecar, wait_for
from support.resources import (
    condition,
    create,
    event_messages,
    get,
    make_pod,
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
RUNS = "backupruns"


def test_a_run_over_pods_records_each_node_and_fails_an_unready_pod(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    ready = [sidecars(), sidecars()]
    make_pod(core, namespace, name="cassandra-0", ip=ready[0].host)
    make_pod(core, namespace, name="cassandra-1", ip=ready[1].host)
    make_pod(core, namespace, name="cassandra-2", ip="127.0.0.254", ready=False)
    make_pod(core, namespace, name="other", ip="127.0.0.253", labels={"app": "web"})
    create(custom, namespace, RUNS, run_manifest("adhoc", cluster=sidecar_cluster()))

    done = wait_for(lambda: terminal(custom, namespace, "adhoc"), timeout=60, what="run")
    assert done["phase"] == "PartiallyFailed"
    assert done["tag"] == "adhoc"
    by_pod = {n["pod"]: n for n in done["nodes"]}
    assert sorted(by_pod) == ["cassandra-0", "cassandra-1", "cassandra-2"]
    assert by_pod["cassandra-0"]["phase"] == by_pod["cassandra-1"]["phase"] == "Succeeded"
    assert by_pod["cassandra-2"]["phase"] == "Failed"
    assert by_pod["cassandra-2"]["error"] == (
        "pod cassandra-2 is not Ready: containers with unready status: [cassandra]")
    assert done["nodesSucceeded"] == "2/3"
    for sidecar in ready:
        dirs = sidecar.snapshot_dirs("adhoc")
        assert len(dirs) == 6, "every table of test, system and system_schema"
    node_bytes = {n["node"]: n["sizeBytes"] for n in done["nodes"] if "sizeBytes" in n}
    assert done["sizeBytes"] == sum(node_bytes.values())
    assert sum(ks["size"] for ks in done["keyspaces"].values()) == done["sizeBytes"]
    assert done["startTime"] <= done["completionTime"]
    complete = condition(done, "Complete")
    assert (complete["status"], complete["reason"]) == ("True", "PartiallyFailed")
    assert event_messages(core, namespace, "adhoc", "NodeFailed") == [
        "node 127.0.0.254: pod cassandra-2 is not Ready: containers with unready status: "
        "[cassandra]"]
    assert event_messages(core, namespace, "adhoc", "RunPartiallyFailed")


def test_a_hung_node_is_failed_at_the_run_deadline(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    quick, hung = sidecars(), sidecars(delay=60)
    create(custom, namespace, RUNS, run_manifest(
        "deadline", cluster=sidecar_cluster(endpoints=[quick.endpoint, hung.endpoint]),
        runDeadlineSeconds=4))

    done = wait_for(lambda: terminal(custom, namespace, "deadline"), timeout=30, what="run")
    by_node = {n["node"]: n for n in done["nodes"]}
    assert by_node[quick.host]["phase"] == "Succeeded"
    assert by_node[hung.host]["phase"] == "Failed"
    assert by_node[hung.host]["error"] == "did not finish within the run deadline (4 s)"
    assert done["phase"] == "PartiallyFailed"
    started = datetime.fromisoformat(done["startTime"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(done["completionTime"].replace("Z", "+00:00"))
    assert timedelta(seconds=3) <= ended - started <= timedelta(seconds=15)


def test_a_run_resumed_after_sigkill_snapshots_each_node_exactly_once(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        start_operator: Callable[..., Process], sidecars: Callable[..., Sidecar]) -> None:
    nodes = [sidecars(delay=3), sidecars(delay=3), sidecars(delay=0)]
    create(custom, namespace, RUNS, run_manifest(
        "crash", cluster=sidecar_cluster(endpoints=[n.endpoint for n in nodes])))
    first = start_operator()
    wait_for(lambda: status(custom, namespace, RUNS, "crash").get("phase") == "Running",
             timeout=30, what="the run to start")
    wait_for(lambda: all(n.nodetool_calls("snapshot") for n in nodes), timeout=20,
             what="every node to receive its request")
    first.kill()
    assert status(custom, namespace, RUNS, "crash")["phase"] == "Running"

    start_operator()
    done = wait_for(lambda: terminal(custom, namespace, "crash"), timeout=60, what="run")
    assert done["phase"] == "Succeeded"
    assert done["tag"] == "crash"
    for node in nodes:
        assert node.nodetool_calls("snapshot") == 1, f"{node.host} snapshotted once"
        assert len(node.snapshot_dirs("crash")) == 6


def test_reconciling_leaves_spec_labels_and_annotations_byte_identical(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    cluster = sidecar_cluster(endpoints=[node.endpoint])
    run = run_manifest("mine", cluster=cluster, keyspaces={"test": {}})
    run["metadata"]["labels"] = {"team": "data", "backups.cassandra.dev/cluster": "x"}
    run["metadata"]["annotations"] = {"note": "hand written"}
    schedule = schedule_manifest("mine", cluster=cluster, first=soon(3))
    schedule["metadata"]["labels"] = {"team": "data"}
    schedule["metadata"]["annotations"] = {"owner": "ops@example.com"}
    before = {RUNS: create(custom, namespace, RUNS, run),
              "backupschedules": create(custom, namespace, "backupschedules", schedule)}

    wait_for(lambda: terminal(custom, namespace, "mine"), timeout=60, what="run")
    wait_for(lambda: status(custom, namespace, "backupschedules", "mine").get("lastScheduleTime"),
             timeout=60, what="the schedule's tick")
    time.sleep(2)
    for plural, created in before.items():
        after = get(custom, namespace, plural, "mine")
        assert after is not None
        for key in ("labels", "annotations"):
            assert after["metadata"].get(key) == created["metadata"].get(key), (plural, key)
        assert after["spec"] == created["spec"], plural
        assert after["metadata"]["generation"] == created["metadata"]["generation"]


def old_run(name: str, *, cluster: dict[str, Any], schedule: str, hours_ago: float,
            phase: str) -> tuple[dict[str, Any], dict[str, Any]]:
    at = datetime.now(UTC) - timedelta(hours=hours_ago)
    body = run_manifest(name, cluster=cluster, tag=name, deletionPolicy="Delete")
    body["metadata"]["labels"] = {"backups.cassandra.dev/schedule": schedule}
    body["metadata"]["annotations"] = {"backups.cassandra.dev/scheduled-at": rfc3339(at)}
    return body, {"phase": phase, "tag": name, "startTime": rfc3339(at),
                  "completionTime": rfc3339(at)}


def test_retention_clears_old_runs_but_not_the_newest_success_or_other_schedules(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, start_operator: Callable[..., Process],
        sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    cluster = sidecar_cluster(endpoints=[node.endpoint])
    olds = {"keep-old-ok": ("keep", 50, "Succeeded"), "keep-old-failed": ("keep", 49, "Failed"),
            "keeper": ("keep-other", 50, "Succeeded"), "keep2-old": ("keep2", 50, "Succeeded")}
    # Old runs as a previous operator would have left them, snapshots on the node.
    for name, (schedule, hours, phase) in olds.items():
        body, run_status = old_run(name, cluster=cluster, schedule=schedule, hours_ago=hours,
                                   phase=phase)
        create(custom, namespace, RUNS, body)
        custom.patch_namespaced_custom_object_status(
            "backups.cassandra.dev", "v1alpha1", namespace, RUNS, name, {"status": run_status})
        node.take_snapshot(name)
    tick = soon(5)
    create(custom, namespace, "backupschedules", schedule_manifest(
        "keep", cluster=cluster, first=tick,
        jobParams={"cleanupAge": 1, "cleanupAgeUnit": "days"}))
    start_operator()

    fresh = f"keep-{tick:%Y%m%d-%H%M}"
    wait_for(lambda: terminal(custom, namespace, fresh), timeout=60, what="the new run")
    wait_for(lambda: get(custom, namespace, RUNS, "keep-old-ok") is None, timeout=60,
             what="retention")
    wait_for(lambda: get(custom, namespace, RUNS, "keep-old-failed") is None, timeout=60,
             what="retention of the failed run")
    assert sorted(r["metadata"]["name"] for r in runs(custom, namespace)) == sorted([
        "keep2-old", "keeper", fresh])
    assert node.snapshot_dirs("keep-old-ok") == []
    assert node.snapshot_dirs("keep-old-failed") == []
    assert node.snapshot_dirs("keeper") != [], "another schedule's snapshot is untouched"
    assert node.snapshot_dirs(fresh) != []
    removed = event_messages(core, namespace, "keep", "RetentionRemoved")
    assert removed == ["retention removed 2 runs older than 1 days: keep-old-ok, "
                       "keep-old-failed"]


def test_deleting_a_run_with_delete_policy_clears_its_snapshot_first(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    nodes = [sidecars(), sidecars()]
    cluster = sidecar_cluster(endpoints=[n.endpoint for n in nodes])
    create(custom, namespace, RUNS, run_manifest("gone", cluster=cluster,
                                                 deletionPolicy="Delete"))
    create(custom, namespace, RUNS, run_manifest("kept", cluster=cluster))
    wait_for(lambda: terminal(custom, namespace, "gone") and terminal(custom, namespace, "kept"),
             timeout=60, what="both runs")
    assert all(n.snapshot_dirs("gone") for n in nodes)

    custom.delete_namespaced_custom_object("backups.cassandra.dev", "v1alpha1", namespace,
                                           RUNS, "gone")
    custom.delete_namespaced_custom_object("backups.cassandra.dev", "v1alpha1", namespace,
                                           RUNS, "kept")
    wait_for(lambda: get(custom, namespace, RUNS, "gone") is None, timeout=30, what="deletion")
    wait_for(lambda: get(custom, namespace, RUNS, "kept") is None, timeout=30, what="deletion")
    for node in nodes:
        assert node.snapshot_dirs("gone") == []
        assert node.snapshot_dirs("kept") != [], "Retain keeps the snapshot on the node"


def test_a_run_whose_token_secret_never_appears_fails_at_its_deadline(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    create(custom, namespace, RUNS, run_manifest(
        "nosecret", cluster=sidecar_cluster(endpoints=[node.endpoint], token_secret="absent"),
        runDeadlineSeconds=3))
    waiting = wait_for(lambda: status(custom, namespace, RUNS, "nosecret").get("phase"),
                       timeout=30, what="the run to be picked up")
    assert waiting in ("Pending", "Failed")
    done = wait_for(lambda: terminal(custom, namespace, "nosecret"), timeout=60, what="run")
    assert done["phase"] == "Failed"
    complete = condition(done, "Complete")
    assert complete["reason"] == "SecretNotFound"
    assert f"Secret {namespace}/absent not found" in complete["message"]
    assert node.nodetool_calls("snapshot") == 0


def test_a_run_applied_before_its_secret_waits_for_it(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        operator: Process, sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    create(custom, namespace, RUNS, run_manifest(
        "early", cluster=sidecar_cluster(endpoints=[node.endpoint])))
    pending = wait_for(lambda: status(custom, namespace, RUNS, "early").get("phase"),
                       timeout=30, what="the run to wait")
    assert pending == "Pending"
    assert condition(status(custom, namespace, RUNS, "early"), "Complete")["reason"] == \
        "SecretNotFound"
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="sidecar-token"), string_data={"token": TOKEN}))
    done = wait_for(lambda: terminal(custom, namespace, "early"), timeout=90, what="run")
    assert done["phase"] == "Succeeded"


def test_only_deletion_with_work_to_do_holds_a_resource_with_a_finalizer(
        custom: client.CustomObjectsApi, namespace: str, token_secret: str,
        start_operator: Callable[..., Process], sidecars: Callable[..., Sidecar]) -> None:
    node = sidecars()
    cluster = sidecar_cluster(endpoints=[node.endpoint])
    create(custom, namespace, RUNS, run_manifest("kept", cluster=cluster))
    create(custom, namespace, RUNS, run_manifest("cleared", cluster=cluster,
                                                 deletionPolicy="Delete"))
    create(custom, namespace, "backupschedules", schedule_manifest(
        "plain", cluster=cluster, first=datetime(2030, 1, 1, tzinfo=UTC)))
    operator = start_operator()
    wait_for(lambda: terminal(custom, namespace, "kept") and terminal(custom, namespace,
                                                                       "cleared"),
             timeout=60, what="both runs")
    wait_for(lambda: status(custom, namespace, "backupschedules", "plain").get("nextRun"),
             timeout=30, what="the schedule")

    def finalizers(plural: str, name: str) -> list[str]:
        found = get(custom, namespace, plural, name) or {}
        return list(found.get("metadata", {}).get("finalizers", []))

    assert finalizers(RUNS, "kept") == []
    assert finalizers("backupschedules", "plain") == []
    assert finalizers(RUNS, "cleared") == ["backups.cassandra.dev/snapshots"]

    operator.stop()
    for plural, name in ((RUNS, "kept"), ("backupschedules", "plain")):
        custom.delete_namespaced_custom_object("backups.cassandra.dev", "v1alpha1", namespace,
                                               plural, name)

    def both_gone() -> bool:
        return get(custom, namespace, RUNS, "kept") is None and \
            get(custom, namespace, "backupschedules", "plain") is None

    wait_for(both_gone, timeout=10, what="both to go while the operator is down")
