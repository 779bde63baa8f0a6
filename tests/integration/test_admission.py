"""`kubectl apply` of a bad manifest fails at admission and names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from support.controlplane import ControlPlane
from support.kubectl import kubectl

pytestmark = pytest.mark.integration

GOOD: dict[str, Any] = {
    "apiVersion": "backups.cassandra.dev/v1alpha1",
    "kind": "BackupSchedule",
    "metadata": {"name": "nightly"},
    "spec": {
        "cluster": {"name": "Test_Cluster",
                    "sidecars": {"podSelector": {"matchLabels": {"app": "cassandra"}},
                                 "tokenSecret": {"name": "tok", "key": "token"}}},
        "firstRunDate": "2012-05-03",
        "firstRunTime": "18:00:00",
        "timezone": "GMT",
        "interval": 1,
        "intervalUnit": "days",
        "jobParams": {"type": "backup", "keyspaces": ["test"], "cleanupAge": 30,
                      "cleanupAgeUnit": "days"},
    },
}


def changed(path: str, value: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = manifest
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return manifest


DELETE = object()


def apply(control_plane: ControlPlane, namespace: str, manifest: dict[str, Any]) -> str:
    result = kubectl("apply", "-n", namespace, "-f", "-", kubeconfig=control_plane.kubeconfig,
                     input=yaml.safe_dump(manifest), check=False)
    return result.stdout + result.stderr if result.returncode else ""


@pytest.mark.parametrize(("manifest", "field", "words"), [
    pytest.param(changed("spec.firstRunDate", "2012-5-3"), "spec.firstRunDate", "date",
                 id="date-form"),
    pytest.param(changed("spec.firstRunDate", "2012-02-30"), "spec.firstRunDate", "date",
                 id="date-that-does-not-exist"),
    pytest.param(changed("spec.firstRunTime", "25:00:00"), "spec.firstRunTime", "match",
                 id="time"),
    pytest.param(changed("spec.firstRunTime", "18:00"), "spec.firstRunTime", "match",
                 id="time-without-seconds"),
    pytest.param(changed("spec.intervalUnit", "months"), "spec.intervalUnit", "months",
                 id="unit"),
    pytest.param(changed("spec.interval", 0), "spec.interval", "at least 1, or -1",
                 id="interval-zero"),
    pytest.param(changed("spec.interval", -2), "spec.interval", "at least 1, or -1",
                 id="interval-negative"),
    pytest.param(changed("spec.interval", -1), "spec.intervalUnit", "one-time job",
                 id="one-time-with-a-unit"),
    pytest.param(changed("spec.intervalUnit", DELETE), "spec.intervalUnit", "required",
                 id="repeating-without-a-unit"),
    pytest.param(changed("spec.jobParams.type", "restore"), "spec.jobParams.type", "backup",
                 id="type"),
    pytest.param(changed("spec.jobParams.keyspaces", ["bad-name"]),
                 "spec.jobParams.keyspaces[0]", "match", id="keyspace-name"),
    pytest.param(changed("spec.jobParams.keyspaces", ["../etc"]),
                 "spec.jobParams.keyspaces[0]", "match", id="keyspace-traversal"),
    pytest.param(changed("spec.jobParams.cleanupAgeUnit", "years"),
                 "spec.jobParams.cleanupAgeUnit", "years", id="cleanup-unit"),
    pytest.param(changed("spec.jobParams.cleanupAge", 0), "spec.jobParams.cleanupAge",
                 "greater than or equal to 1", id="cleanup-age"),
    pytest.param(changed("spec.cluster.opscenter", {"url": "https://opscenter:8443"}),
                 "spec.cluster", "exactly one backend", id="two-backends"),
    pytest.param(changed("spec.cluster.sidecars", DELETE), "spec.cluster",
                 "exactly one backend", id="no-backend"),
    pytest.param(changed("spec.cluster.sidecars.endpoints", ["db1:9105"]),
                 "spec.cluster.sidecars", "exactly one of podSelector and endpoints",
                 id="selector-and-endpoints"),
    pytest.param(changed("spec.cluster.sidecars.endpoints", ["no port"]),
                 "spec.cluster.sidecars.endpoints[0]", "match", id="endpoint-form"),
    pytest.param(changed("spec.concurrencyPolicy", "Replace"), "spec.concurrencyPolicy",
                 "Replace", id="concurrency-policy"),
    pytest.param(changed("metadata.name", "n" * 50), "", "at most 49 characters",
                 id="name-too-long-for-run-names"),
])
def test_bad_schedules_are_refused_naming_the_field(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str,
        manifest: dict[str, Any], field: str, words: str) -> None:
    error = apply(control_plane, namespace, manifest)
    assert error, "the API server accepted a bad manifest"
    if field:
        assert f"{field}:" in error
    assert words in error


def test_the_good_schedule_is_accepted_with_its_defaults(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str) -> None:
    assert apply(control_plane, namespace, GOOD) == ""
    stored = yaml.safe_load(kubectl("get", "bsched", "nightly", "-n", namespace, "-o", "yaml",
                                    kubeconfig=control_plane.kubeconfig).stdout)
    assert stored["spec"]["suspend"] is False
    assert stored["spec"]["concurrencyPolicy"] == "Forbid"
    assert stored["spec"]["startingDeadlineSeconds"] == 3600
    assert stored["spec"]["cluster"]["sidecars"]["port"] == 9105


def test_a_one_time_job_may_say_interval_unit_null(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str) -> None:
    once = changed("spec.interval", -1)
    once["spec"]["intervalUnit"] = None
    result = kubectl("create", "-n", namespace, "-f", "-", kubeconfig=control_plane.kubeconfig,
                     input=yaml.safe_dump(once), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("keyspaces", "words"), [
    pytest.param({"bad-name": {}}, "keyspace names must match", id="keyspace-key"),
    pytest.param({"test": {"size": -1}}, "greater than or equal to 0", id="negative-size"),
])
def test_bad_runs_are_refused_naming_the_field(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str,
        keyspaces: dict[str, Any], words: str) -> None:
    run = {"apiVersion": "backups.cassandra.dev/v1alpha1", "kind": "BackupRun",
           "metadata": {"name": "adhoc"},
           "spec": {"cluster": GOOD["spec"]["cluster"], "keyspaces": keyspaces}}
    error = apply(control_plane, namespace, run)
    assert "spec.keyspaces" in error
    assert words in error


def test_a_run_whose_name_cannot_be_its_tag_needs_a_tag(
        control_plane: ControlPlane, crds_installed: list[str], namespace: str) -> None:
    run: dict[str, Any] = {
        "apiVersion": "backups.cassandra.dev/v1alpha1", "kind": "BackupRun",
        "metadata": {"name": "r" * 130}, "spec": {"cluster": GOOD["spec"]["cluster"]}}
    assert "set spec.tag or use a shorter name" in apply(control_plane, namespace, run)
    run["spec"]["tag"] = "short"
    assert apply(control_plane, namespace, run) == ""


@pytest.mark.parametrize("tag", ["../../etc", "..", "-rf", "a b"])
def test_a_hostile_tag_is_refused(control_plane: ControlPlane, crds_installed: list[str],
                                  namespace: str, tag: str) -> None:
    run = {"apiVersion": "backups.cassandra.dev/v1alpha1", "kind": "BackupRun",
           "metadata": {"name": "adhoc"},
           "spec": {"cluster": GOOD["spec"]["cluster"], "tag": tag}}
    error = apply(control_plane, namespace, run)
    assert "spec.tag" in error


def test_kubectl_explain_describes_the_fields(control_plane: ControlPlane,
                                              crds_installed: list[str]) -> None:
    explained = kubectl("explain", "backupschedule.spec.jobParams.cleanupAge",
                        kubeconfig=control_plane.kubeconfig).stdout
    assert "OpsCenter job_params.cleanup_age" in explained
    explained = kubectl("explain", "brun.status.nodes",
                        kubeconfig=control_plane.kubeconfig).stdout
    assert "Per-node results." in explained
