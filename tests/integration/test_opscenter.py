"""The opscenter backend end to end: the operator process, the real API server, the fake OpsCenter.

OpsCenter itself cannot be had, so ``support.fake_opscenter`` stands in for it, on
loopback. The operator polls it every 2 s here (``--opscenter-poll-seconds 2``) and gives
up on an answer after 1 s (``--opscenter-timeout-seconds``), so that slow answers
and back-off show within a test's patience.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.controlplane import ControlPlane
from support.fake_opscenter import FakeOpsCenter, self_signed_certificate, server_context
from support.kubectl import kubectl
from support.processes import Process, wait_for
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
    status,
    terminal,
)

pytestmark = pytest.mark.integration
SCHEDULES = "backupschedules"
PASSWORD = "integration-opscenter-pass-41d9"
NODES = ["10.11.12.150", "10.11.12.152"]


@pytest.fixture
def opscenter() -> Iterator[FakeOpsCenter]:
    with FakeOpsCenter(users={"admin": PASSWORD}) as fake:
        yield fake


@pytest.fixture
def login_secret(core: client.CoreV1Api, namespace: str) -> str:
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="opscenter-login"),
        string_data={"username": "admin", "password": PASSWORD}))
    return "opscenter-login"


@pytest.fixture
def start_ops_operator(start_operator: Callable[..., Process]) -> Callable[..., Process]:
    def start(*extra: str) -> Process:
        return start_operator(extra=["--opscenter-poll-seconds", "2",
                                     "--opscenter-timeout-seconds", "1", *extra])

    return start


@pytest.fixture
def ops_operator(start_ops_operator: Callable[..., Process], login_secret: str) -> Process:
    return start_ops_operator()


def _cluster(fake: FakeOpsCenter, name: str = "Test_Cluster", **backend: Any) -> dict[str, Any]:
    return {"name": name, "opscenter": {"url": fake.url,
                                        "credentialsSecret": {"name": "opscenter-login"},
                                        **backend}}


def _tomorrow_at_six() -> datetime:
    return (datetime.now(UTC) + timedelta(days=1)).replace(hour=18, minute=0, second=0,
                                                           microsecond=0)


def _nightly(fake: FakeOpsCenter, name: str = "nightly", *, keyspaces: list[str] | None = None,
             **spec: Any) -> dict[str, Any]:
    spec.setdefault("cluster", _cluster(fake))
    return schedule_manifest(name, first=_tomorrow_at_six(), interval=1, unit="days",
                             jobParams={"keyspaces": keyspaces or ["test"]}, **spec)


def _ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return condition(status(custom, namespace, SCHEDULES, name), "Ready")


def _wait_ready(custom: client.CustomObjectsApi, namespace: str, name: str, *, is_: str,
                reason: str | None = None, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        ready = _ready(custom, namespace, name)
        if ready.get("status") == is_ and (reason is None or ready.get("reason") == reason):
            return ready
        return None

    return wait_for(check, timeout=timeout, what=f"Ready={is_} {reason or ''} on {name}")


def _wait_id(custom: client.CustomObjectsApi, namespace: str, name: str,
             timeout: float = 60) -> str:
    found: str = wait_for(lambda: status(custom, namespace, SCHEDULES, name).get("id"),
                          timeout=timeout, what=f"status.id of {name}")
    return found


def test_a_schedule_is_created_in_opscenter_once_and_its_next_run_mirrored(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        opscenter: FakeOpsCenter, ops_operator: Process) -> None:
    first = _tomorrow_at_six()
    create(custom, namespace, SCHEDULES, _nightly(opscenter))

    schedule_id = _wait_id(custom, namespace, "nightly")
    observed = wait_for(lambda: status(custom, namespace, SCHEDULES, "nightly").get("nextRun")
                        and status(custom, namespace, SCHEDULES, "nightly"),
                        timeout=30, what="nextRun")

    (shown,) = opscenter.schedules()
    assert shown["id"] == schedule_id
    assert {k: shown[k] for k in ("first_run_date", "first_run_time", "timezone", "interval",
                                  "interval_unit", "job_params")} == {
        "first_run_date": first.strftime("%Y-%m-%d"), "first_run_time": "18:00:00",
        "timezone": "GMT", "interval": 1, "interval_unit": "days",
        "job_params": {"type": "backup", "keyspaces": ["test"]}}
    assert observed["nextRun"] == rfc3339(first)
    assert observed["nextRunLocal"] == f"{first:%Y-%m-%d} 18:00:00 GMT"
    assert observed["backend"] == "opscenter"
    assert condition(observed, "Ready")["reason"] == "Scheduled"
    assert f"created OpsCenter job schedule {schedule_id} in cluster Test_Cluster" in \
        event_messages(core, namespace, "nightly", "ScheduleCreated")

    time.sleep(5)   # a few polls: they read, and never post again
    assert len(opscenter.requests_to("POST", "/job-schedules")) == 1
    assert opscenter.requests_to("PUT") == []
    assert opscenter.requests[0].path == "/login"
    assert all(r.headers.get("opscenter-session") in opscenter.sessions_issued
               for r in opscenter.requests[1:])


def test_editing_a_schedule_puts_the_new_fields_to_the_same_id(
        custom: client.CustomObjectsApi, namespace: str, opscenter: FakeOpsCenter,
        ops_operator: Process) -> None:
    create(custom, namespace, SCHEDULES, _nightly(opscenter))
    schedule_id = _wait_id(custom, namespace, "nightly")

    custom.patch_namespaced_custom_object(
        "backups.cassandra.dev", "v1alpha1", namespace, SCHEDULES, "nightly",
        {"spec": {"firstRunTime": "19:30:00", "jobParams": {"keyspaces": ["test", "movies_ks"]}}})

    wait_for(lambda: status(custom, namespace, SCHEDULES, "nightly").get("nextRunLocal", "")
             .endswith("19:30:00 GMT"), timeout=30, what="the edited next run")
    (put,) = opscenter.requests_to("PUT")
    assert put.path == f"/Test_Cluster/job-schedules/{schedule_id}"
    assert put.json["first_run_time"] == "19:30:00"
    assert put.json["job_params"] == {"type": "backup", "keyspaces": ["test", "movies_ks"]}
    (shown,) = opscenter.schedules()
    assert (shown["id"], shown["first_run_time"]) == (schedule_id, "19:30:00")
    assert status(custom, namespace, SCHEDULES, "nightly")["observedGeneration"] == 2


def test_deleting_a_schedule_waits_until_opscenter_deleted_it(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        opscenter: FakeOpsCenter, ops_operator: Process) -> None:
    create(custom, namespace, SCHEDULES, _nightly(opscenter))
    schedule_id = _wait_id(custom, namespace, "nightly")
    opscenter.fail(503, method="DELETE")

    custom.delete_namespaced_custom_object("backups.cassandra.dev", "v1alpha1", namespace,
                                           SCHEDULES, "nightly")

    refused = wait_for(lambda: [m or "" for r, m in events(core, namespace, "nightly")
                                if r == "DeleteFailed"], timeout=60, what="a DeleteFailed Event")
    assert refused[0].startswith(f"OpsCenter job schedule {schedule_id} is not deleted yet: ")
    assert "HTTP 503" in refused[0]
    held = get(custom, namespace, SCHEDULES, "nightly")
    assert held is not None and held["metadata"].get("deletionTimestamp")
    assert len(opscenter.schedules()) == 1

    opscenter.clear_faults()
    wait_for(lambda: get(custom, namespace, SCHEDULES, "nightly") is None, timeout=90,
             what="the schedule to go once OpsCenter deleted it")
    assert opscenter.schedules() == []
    assert opscenter.requests_to("DELETE")[-1].path == \
        f"/Test_Cluster/job-schedules/{schedule_id}"


def test_a_schedule_deleted_in_opscenter_is_recreated_with_an_event(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        opscenter: FakeOpsCenter, ops_operator: Process) -> None:
    create(custom, namespace, SCHEDULES, _nightly(opscenter))
    old_id = _wait_id(custom, namespace, "nightly")

    opscenter.remove_schedule(old_id)

    new_id = wait_for(lambda: (found := status(custom, namespace, SCHEDULES, "nightly")
                               .get("id")) != old_id and found, timeout=30, what="a new id")
    assert [s["id"] for s in opscenter.schedules()] == [new_id]
    assert (f"OpsCenter job schedule {old_id} is gone from cluster Test_Cluster (deleted "
            "outside Kubernetes?); creating it again") in \
        event_messages(core, namespace, "nightly", "ScheduleRecreated")
    time.sleep(5)
    assert len(opscenter.schedules()) == 1


def test_backups_opscenter_takes_appear_as_runs_filterable_by_keyspace(
        custom: client.CustomObjectsApi, namespace: str, control_plane: ControlPlane,
        opscenter: FakeOpsCenter, ops_operator: Process) -> None:
    create(custom, namespace, SCHEDULES, _nightly(opscenter, "tests", keyspaces=["test"]))
    create(custom, namespace, SCHEDULES, _nightly(opscenter, "movies", keyspaces=["movies_ks"]))
    _wait_id(custom, namespace, "tests")
    _wait_id(custom, namespace, "movies")
    tick = _tomorrow_at_six()

    taken = opscenter.advance(tick + timedelta(seconds=1) - opscenter.now())

    assert len(taken) == 2
    run_name = f"tests-{tick:%Y%m%d-%H%M}"
    done = wait_for(lambda: terminal(custom, namespace, run_name), timeout=30,
                    what=f"mirrored run {run_name}")
    wait_for(lambda: terminal(custom, namespace, f"movies-{tick:%Y%m%d-%H%M}"), timeout=30,
             what="the other mirrored run")
    assert done["phase"] == "Succeeded"
    assert done["nodesSucceeded"] == "2/2"
    assert [n["node"] for n in done["nodes"]] == NODES
    assert done["keyspaces"] == {"test": {"nodes": NODES, "size": 2 * 4543}}
    assert done["sizeBytes"] == 2 * 4543
    assert done["startTime"] == done["completionTime"] == rfc3339(tick)
    run = get(custom, namespace, "backupruns", run_name)
    assert run is not None
    assert run["metadata"]["labels"] == {
        "backups.cassandra.dev/schedule": "tests",
        "backups.cassandra.dev/cluster": "Test_Cluster",
        "keyspace.backups.cassandra.dev/test": "true"}
    schedule = get(custom, namespace, SCHEDULES, "tests")
    assert schedule is not None
    (owner,) = run["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "BackupSchedule", "tests", schedule["metadata"]["uid"])

    listed = kubectl("get", "brun", "-n", namespace, "-o", "name", "-l",
                     "keyspace.backups.cassandra.dev/test=true",
                     kubeconfig=control_plane.kubeconfig).stdout.split()
    assert listed == [f"backuprun.backups.cassandra.dev/{run_name}"]
    observed = wait_for(lambda: status(custom, namespace, SCHEDULES, "tests").get("lastRun")
                        and status(custom, namespace, SCHEDULES, "tests"),
                        timeout=30, what="lastRun")
    assert observed["lastRun"] == rfc3339(tick)
    assert observed["lastRunName"] == run_name
    assert observed["nextRunLocal"] == f"{tick + timedelta(days=1):%Y-%m-%d} 18:00:00 GMT"
    time.sleep(4)
    assert len(runs(custom, namespace)) == 2, "each backup is mirrored once"


def test_an_ad_hoc_run_records_a_failing_node(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        opscenter: FakeOpsCenter, ops_operator: Process) -> None:
    opscenter.fail_node("10.11.12.152", "No space left on device")

    create(custom, namespace, "backupruns", run_manifest(
        "adhoc", cluster=_cluster(opscenter), keyspaces={"test": {"nodes": NODES}}))

    done = wait_for(lambda: terminal(custom, namespace, "adhoc"), timeout=60, what="run")
    (posted,) = opscenter.requests_to("POST", "/backups/run")
    assert posted.json == {"keyspaces": {"test": {"nodes": NODES}}}
    assert done["phase"] == "PartiallyFailed"
    assert done["nodesSucceeded"] == "1/2"
    by_node = {n["node"]: n for n in done["nodes"]}
    assert by_node["10.11.12.150"]["phase"] == "Succeeded"
    assert (by_node["10.11.12.152"]["phase"], by_node["10.11.12.152"]["error"]) == (
        "Failed", "No space left on device")
    assert done["keyspaces"] == {"test": {"nodes": ["10.11.12.150"], "size": 4543}}
    assert done["backupId"].startswith("opscenter_adhoc_")
    assert "node 10.11.12.152: No space left on device" in \
        event_messages(core, namespace, "adhoc", "NodeFailed")


def test_an_expired_session_costs_one_login_and_nothing_else(
        custom: client.CustomObjectsApi, namespace: str, opscenter: FakeOpsCenter,
        ops_operator: Process) -> None:
    create(custom, namespace, SCHEDULES, _nightly(opscenter))
    _wait_id(custom, namespace, "nightly")
    _wait_ready(custom, namespace, "nightly", is_="True")
    logins = len(opscenter.requests_to("POST", "/login"))

    opscenter.expire_sessions()
    wait_for(lambda: len(opscenter.requests_to("POST", "/login")) > logins, timeout=30,
             what="a fresh login")
    time.sleep(5)

    assert len(opscenter.requests_to("POST", "/login")) == logins + 1
    after = opscenter.requests[-1]
    assert after.headers["opscenter-session"] == opscenter.sessions_issued[-1]
    ready = _ready(custom, namespace, "nightly")
    assert (ready["status"], ready["reason"]) == ("True", "Scheduled")


def test_500s_back_off_and_leave_exactly_one_schedule(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        opscenter: FakeOpsCenter, ops_operator: Process) -> None:
    opscenter.fail(500, method="POST", path="/job-schedules")
    create(custom, namespace, SCHEDULES, _nightly(opscenter))

    ready = _wait_ready(custom, namespace, "nightly", is_="False",
                        reason="OpsCenterUnavailable")
    assert "failed POST /Test_Cluster/job-schedules/ with HTTP 500" in ready["message"]
    assert ready["message"].endswith("retrying with back-off")
    assert event_messages(core, namespace, "nightly", "OpsCenterUnavailable")
    posts = len(opscenter.requests_to("POST", "/job-schedules"))
    time.sleep(16)   # eight polls; back-off of 2, 4 and 8 s allows about three tries
    assert len(opscenter.requests_to("POST", "/job-schedules")) - posts <= 4

    opscenter.clear_faults()
    schedule_id = _wait_id(custom, namespace, "nightly", timeout=120)
    _wait_ready(custom, namespace, "nightly", is_="True")
    assert [s["id"] for s in opscenter.schedules()] == [schedule_id]


def test_timeouts_back_off_and_the_lost_answer_is_adopted(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        opscenter: FakeOpsCenter, ops_operator: Process) -> None:
    opscenter.slow(3.0, path="/job-schedules")
    create(custom, namespace, SCHEDULES, _nightly(opscenter))

    ready = _wait_ready(custom, namespace, "nightly", is_="False",
                        reason="OpsCenterUnavailable")
    assert "did not answer" in ready["message"]
    assert "within 1 s" in ready["message"]
    assert len(opscenter.schedules()) == 1, "the slow POST was carried out"
    assert condition(status(custom, namespace, SCHEDULES, "nightly"),
                     "Registered")["status"] == "Unknown"

    opscenter.clear_faults()
    schedule_id = _wait_id(custom, namespace, "nightly", timeout=120)
    assert [s["id"] for s in opscenter.schedules()] == [schedule_id]
    assert len(opscenter.requests_to("POST", "/job-schedules")) == 1
    assert event_messages(core, namespace, "nightly", "ScheduleAdopted")


def test_an_unknown_cluster_is_a_condition_with_opscenters_message_and_no_storm(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        opscenter: FakeOpsCenter, ops_operator: Process) -> None:
    create(custom, namespace, SCHEDULES, _nightly(opscenter, cluster=_cluster(opscenter, "Nope")))

    ready = _wait_ready(custom, namespace, "nightly", is_="False", reason="ClusterNotFound")
    assert "there is no cluster named Nope in OpsCenter" in ready["message"]
    assert "spec.cluster.name (Nope)" in ready["message"]
    asked = len(opscenter.requests_to(path="/Nope/"))
    time.sleep(8)   # four polls

    assert len(opscenter.requests_to(path="/Nope/")) == asked == 1
    assert len(event_messages(core, namespace, "nightly", "ClusterNotFound")) == 1


def test_malformed_json_is_a_condition_and_recovers(
        custom: client.CustomObjectsApi, namespace: str, opscenter: FakeOpsCenter,
        ops_operator: Process) -> None:
    opscenter.malformed(method="GET", path="/backups")
    create(custom, namespace, SCHEDULES, _nightly(opscenter))

    ready = _wait_ready(custom, namespace, "nightly", is_="False", reason="OpsCenterBadAnswer")
    assert "answered GET /Test_Cluster/backups (HTTP 200) with a body that is not JSON" in \
        ready["message"]

    opscenter.clear_faults()
    _wait_ready(custom, namespace, "nightly", is_="True", timeout=90)
    assert len(opscenter.schedules()) == 1


def test_tls_uses_the_ca_from_the_secret(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        tmp_path: Path, login_secret: str, start_ops_operator: Callable[..., Process]) -> None:
    cert, key = self_signed_certificate(tmp_path)
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="opscenter-ca"),
        string_data={"ca.crt": cert.read_text()}))
    with FakeOpsCenter(users={"admin": PASSWORD}, ssl_context=server_context(cert, key)) as fake:
        start_ops_operator()
        trusted = _cluster(fake, caSecret={"name": "opscenter-ca", "key": "ca.crt"})
        create(custom, namespace, SCHEDULES, _nightly(fake, "trusted", cluster=trusted))
        create(custom, namespace, SCHEDULES, _nightly(fake, "untrusted"))

        schedule_id = _wait_id(custom, namespace, "trusted")
        refused = _wait_ready(custom, namespace, "untrusted", is_="False",
                              reason="OpsCenterUnavailable")

        assert [s["id"] for s in fake.schedules()] == [schedule_id]
        assert "CERTIFICATE_VERIFY_FAILED" in refused["message"]


def test_password_and_session_ids_appear_in_no_log_event_or_status(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        opscenter: FakeOpsCenter, login_secret: str,
        start_ops_operator: Callable[..., Process]) -> None:
    operator = start_ops_operator("--verbose")
    create(custom, namespace, SCHEDULES, _nightly(opscenter))
    _wait_id(custom, namespace, "nightly")
    opscenter.expire_sessions()
    wait_for(lambda: len(opscenter.sessions_issued) >= 2, timeout=30, what="a fresh login")
    opscenter.expire_sessions(for_good=True)
    _wait_ready(custom, namespace, "nightly", is_="False", reason="LoginFailed")
    create(custom, namespace, "backupruns", run_manifest(
        "adhoc", cluster=_cluster(opscenter), keyspaces={"test": {}}))
    failed = wait_for(lambda: terminal(custom, namespace, "adhoc"), timeout=60, what="run")

    assert failed["phase"] == "Failed"
    assert "even right after a fresh login" in condition(failed, "Complete")["message"]
    log = operator.output()
    assert "even right after a fresh login" in log
    everything = [json.dumps(item) for item in
                  [*runs(custom, namespace), get(custom, namespace, SCHEDULES, "nightly")]]
    everything += [f"{e.reason} {e.message}" for e in core.list_namespaced_event(namespace).items]
    secrets = [PASSWORD, *opscenter.sessions_issued]
    assert len(secrets) >= 3
    for secret in secrets:
        assert secret not in log
        assert not any(secret in text for text in everything)
