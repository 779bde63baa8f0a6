"""The opscenter backend's decisions, against the fake OpsCenter and an in-memory API server.

The Kubernetes side is a dictionary here (the integration tests use the real one), so each
step of a reconcile can be looked at: what OpsCenter was asked, what status says.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from cassandra_backup import models
from cassandra_backup.kube import RUNS, SCHEDULES, KubeApi, SecretMissing
from cassandra_backup.metrics import Metrics
from cassandra_backup.opscenter import mapping
from cassandra_backup.opscenter.client import OpsCenterClient, RetryPolicy
from cassandra_backup.opscenter.context import OpsCenterClients, OpsCenterContext, RetryLater
from cassandra_backup.opscenter.mirror import BACKUP_ANNOTATION, mirror_body, mirror_status
from cassandra_backup.opscenter.runs import execute_run
from cassandra_backup.opscenter.schedules import delete_schedule, reconcile_schedule
from support.fake_opscenter import FakeOpsCenter

NAMESPACE = "cassandra"
PASSWORD = "unit-pass-8c1e"
START = datetime(2012, 5, 3, 12, 0, tzinfo=UTC)
NODES = ["10.11.12.150", "10.11.12.152"]


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class MemoryKube(KubeApi):
    """The calls the backend makes, on dictionaries instead of an API server."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, str]] = {}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {SCHEDULES: {}, RUNS: {}}
        self.status_writes = 0

    async def secret_data(self, *, namespace: str, name: str) -> dict[str, str]:
        if name not in self.secrets:
            raise SecretMissing(namespace=namespace, name=name)
        return dict(self.secrets[name])

    async def secret_value(self, *, namespace: str, name: str, key: str) -> str:
        data = await self.secret_data(namespace=namespace, name=name)
        if key not in data:
            raise SecretMissing(namespace=namespace, name=name, key=key)
        return data[key]

    async def list_runs(self, *, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        return [copy.deepcopy(run) for run in self.objects[RUNS].values()
                if all(run["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]

    async def get_schedule(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects[SCHEDULES].get(name))

    async def get_run(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects[RUNS].get(name))

    async def create_run(self, *, namespace: str, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        if name in self.objects[RUNS]:
            return False
        created = copy.deepcopy(body)
        created.pop("status", None)
        self.objects[RUNS][name] = created
        return True

    async def delete_run(self, *, namespace: str, name: str) -> None:
        self.objects[RUNS].pop(name, None)

    async def patch_status(self, *, plural: str, namespace: str, name: str,
                           status: dict[str, Any]) -> None:
        self.status_writes += 1
        found = self.objects[plural].get(name)
        if found is not None:
            _merge(found.setdefault("status", {}), status)

    def put(self, plural: str, body: dict[str, Any]) -> None:
        self.objects[plural][body["metadata"]["name"]] = copy.deepcopy(body)

    def body(self, plural: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[plural][name])

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(dict(self.objects[plural][name].get("status") or {}))


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str, str]] = []

    def info(self, body: Mapping[str, Any], *, reason: str, message: str) -> None:
        self.posted.append(("Normal", body["metadata"]["name"], reason, message))

    def warning(self, body: Mapping[str, Any], *, reason: str, message: str) -> None:
        self.posted.append(("Warning", body["metadata"]["name"], reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, _, reason, _ in self.posted]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeOpsCenter]:
    with FakeOpsCenter(users={"admin": PASSWORD}, now=START) as running:
        yield running


@pytest.fixture
def kube() -> MemoryKube:
    api = MemoryKube()
    api.secrets["opscenter-login"] = {"username": "admin", "password": PASSWORD}
    return api


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(kube: MemoryKube, events: Events, clock: Clock) -> OpsCenterContext:
    factory = partial(OpsCenterClient, retry=RetryPolicy(attempts=2, base_delay=0.01))
    return OpsCenterContext(api=kube, events=events, clock=clock, metrics=Metrics(),
                            poll_interval=timedelta(seconds=2), request_timeout=0.5,
                            clients=OpsCenterClients(factory))


def _cluster(fake: FakeOpsCenter, name: str = "Test_Cluster") -> dict[str, Any]:
    return {"name": name, "opscenter": {"url": fake.url,
                                        "credentialsSecret": {"name": "opscenter-login"}}}


def _schedule(fake: FakeOpsCenter, *, name: str = "nightly", generation: int = 1,
              cluster: str = "Test_Cluster", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": models.API_VERSION, "kind": "BackupSchedule",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}",
                     "generation": generation},
        "spec": {"cluster": _cluster(fake, cluster), "firstRunDate": "2012-05-03",
                 "firstRunTime": "18:00:00", "timezone": "GMT", "interval": 1,
                 "intervalUnit": "days", "jobParams": {"keyspaces": ["test"]}, **spec},
    }


async def _reconcile(ctx: OpsCenterContext, kube: MemoryKube, name: str = "nightly") -> datetime:
    wake = await reconcile_schedule(ctx, kube.body(SCHEDULES, name))
    assert wake.at is not None
    return wake.at


def _condition(status: dict[str, Any], type: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type), {})


async def test_a_new_schedule_is_posted_once_and_its_id_kept(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events,
        clock: Clock) -> None:
    kube.put(SCHEDULES, _schedule(fake))

    wake = await _reconcile(ctx, kube)
    await _reconcile(ctx, kube)

    (shown,) = fake.schedules()
    status = kube.status(SCHEDULES, "nightly")
    assert status["id"] == shown["id"]
    assert shown["job_params"] == {"type": "backup", "keyspaces": ["test"]}
    assert len(fake.requests_to("POST", "/job-schedules")) == 1
    assert fake.requests_to("PUT") == []
    assert status["nextRun"] == "2012-05-03T18:00:00Z"
    assert status["nextRunLocal"] == "2012-05-03 18:00:00 GMT"
    assert status["observedGeneration"] == 1
    assert _condition(status, "Ready")["reason"] == "Scheduled"
    assert _condition(status, "Registered")["status"] == "True"
    assert events.reasons() == ["ScheduleCreated"]
    assert wake == clock.now + timedelta(seconds=2)


async def test_a_new_generation_is_put_to_the_same_id(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    await _reconcile(ctx, kube)
    schedule_id = kube.status(SCHEDULES, "nightly")["id"]

    edited = _schedule(fake, generation=2, firstRunTime="19:30:00")
    kube.put(SCHEDULES, {**edited, "status": kube.status(SCHEDULES, "nightly")})
    await _reconcile(ctx, kube)

    (put,) = fake.requests_to("PUT")
    assert put.path == f"/Test_Cluster/job-schedules/{schedule_id}"
    assert put.json["first_run_time"] == "19:30:00"
    assert [s["id"] for s in fake.schedules()] == [schedule_id]
    status = kube.status(SCHEDULES, "nightly")
    assert status["nextRunLocal"] == "2012-05-03 19:30:00 GMT"
    assert status["observedGeneration"] == 2
    assert "ScheduleUpdated" in events.reasons()


async def test_a_post_whose_answer_was_lost_is_adopted_not_repeated(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events,
        clock: Clock) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    fake.slow(1.5, method="POST", path="/job-schedules", times=1)

    retry_at = await _reconcile(ctx, kube)

    status = kube.status(SCHEDULES, "nightly")
    assert "id" not in status
    assert _condition(status, "Registered")["status"] == "Unknown"
    ready = _condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "OpsCenterUnavailable")
    assert "did not answer POST /Test_Cluster/job-schedules/ within 0.5 s" in ready["message"]

    clock.now = retry_at
    await _reconcile(ctx, kube)

    (shown,) = fake.schedules()
    assert kube.status(SCHEDULES, "nightly")["id"] == shown["id"]
    assert len(fake.requests_to("POST", "/job-schedules")) == 1
    assert "ScheduleAdopted" in events.reasons()


async def test_5xx_backs_off_exponentially_and_then_creates_exactly_one(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, clock: Clock) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    fake.fail(500)
    waits = []
    for _ in range(4):
        retry_at = await _reconcile(ctx, kube)
        waits.append(retry_at - clock.now)
        sent = len(fake.requests)
        assert await _reconcile(ctx, kube) == retry_at, "nothing is sent before retry_at"
        assert len(fake.requests) == sent
        clock.now = retry_at

    assert all(later > earlier for earlier, later in itertools.pairwise(waits))
    ready = _condition(kube.status(SCHEDULES, "nightly"), "Ready")
    assert ready["reason"] == "OpsCenterUnavailable"
    assert "HTTP 500: Internal error: OpsCenter failed while handling" in ready["message"]

    fake.clear_faults()
    await _reconcile(ctx, kube)
    assert len(fake.schedules()) == 1
    assert _condition(kube.status(SCHEDULES, "nightly"), "Ready")["status"] == "True"


async def test_an_unknown_cluster_is_a_condition_and_no_storm(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events,
        clock: Clock) -> None:
    kube.put(SCHEDULES, _schedule(fake, cluster="Nope"))

    retry_at = await _reconcile(ctx, kube)
    for _ in range(5):
        clock.now += timedelta(seconds=30)
        await _reconcile(ctx, kube)

    ready = _condition(kube.status(SCHEDULES, "nightly"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ClusterNotFound")
    assert "there is no cluster named Nope in OpsCenter" in ready["message"]
    assert "spec.cluster.name (Nope)" in ready["message"]
    assert len(fake.requests_to(path="/Nope/")) == 1
    assert retry_at - START >= timedelta(minutes=10)
    assert events.reasons() == ["ClusterNotFound"]

    fixed = _schedule(fake, generation=2)
    kube.put(SCHEDULES, {**fixed, "status": kube.status(SCHEDULES, "nightly")})
    await _reconcile(ctx, kube)
    assert len(fake.schedules()) == 1, "a spec change is tried at once"


async def test_a_schedule_deleted_in_opscenter_is_recreated_with_an_event(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    await _reconcile(ctx, kube)
    old_id = kube.status(SCHEDULES, "nightly")["id"]

    fake.remove_schedule(old_id)
    await _reconcile(ctx, kube)

    (shown,) = fake.schedules()
    assert shown["id"] != old_id
    assert kube.status(SCHEDULES, "nightly")["id"] == shown["id"]
    (recreated,) = [m for _, _, r, m in events.posted if r == "ScheduleRecreated"]
    assert recreated == (f"OpsCenter job schedule {old_id} is gone from cluster Test_Cluster "
                         "(deleted outside Kubernetes?); creating it again")


async def test_backups_opscenter_took_become_owned_labelled_runs(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    await _reconcile(ctx, kube)
    schedule_id = kube.status(SCHEDULES, "nightly")["id"]
    (tag,) = fake.advance(timedelta(hours=6, seconds=1))

    await _reconcile(ctx, kube)
    await _reconcile(ctx, kube)

    run = kube.body(RUNS, "nightly-20120503-1800")
    assert run["metadata"]["labels"] == {
        "backups.cassandra.dev/schedule": "nightly",
        "backups.cassandra.dev/cluster": "Test_Cluster",
        "keyspace.backups.cassandra.dev/test": "true"}
    assert run["metadata"]["ownerReferences"] == [{
        "apiVersion": models.API_VERSION, "kind": "BackupSchedule", "name": "nightly",
        "uid": "uid-nightly", "controller": True}]
    assert run["metadata"]["annotations"][BACKUP_ANNOTATION] == tag
    assert run["spec"]["tag"] == tag
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["backupId"] == tag
    assert [n["node"] for n in run["status"]["nodes"]] == NODES
    assert run["status"]["keyspaces"] == {"test": {"nodes": NODES, "size": 2 * 4543}}
    assert run["status"]["sizeBytes"] == 2 * 4543
    assert run["status"]["startTime"] == "2012-05-03T18:00:00Z"
    status = kube.status(SCHEDULES, "nightly")
    assert status["lastRun"] == "2012-05-03T18:00:00Z"
    assert status["lastRunName"] == "nightly-20120503-1800"
    assert status["nextRunLocal"] == "2012-05-04 18:00:00 GMT"
    assert events.reasons().count("BackupRecorded") == 1
    assert schedule_id in tag


async def test_a_backup_opscenter_no_longer_lists_loses_its_run(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    await _reconcile(ctx, kube)
    (tag,) = fake.advance(timedelta(hours=6, seconds=1))
    await _reconcile(ctx, kube)

    del fake.cluster().backups[tag]
    await _reconcile(ctx, kube)

    assert kube.objects[RUNS] == {}


async def test_suspending_deletes_the_opscenter_schedule_and_unsuspending_posts_anew(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    await _reconcile(ctx, kube)

    kube.put(SCHEDULES, {**_schedule(fake, generation=2, suspend=True),
                         "status": kube.status(SCHEDULES, "nightly")})
    await _reconcile(ctx, kube)
    suspended = kube.status(SCHEDULES, "nightly")

    kube.put(SCHEDULES, {**_schedule(fake, generation=3), "status": suspended})
    await _reconcile(ctx, kube)

    assert "id" not in suspended
    assert _condition(suspended, "Suspended")["status"] == "True"
    assert len(fake.requests_to("DELETE")) == 1
    assert len(fake.schedules()) == 1
    assert kube.status(SCHEDULES, "nightly")["id"] == fake.schedules()[0]["id"]


async def test_deleting_waits_for_opscenter_and_accepts_a_gone_id(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    await _reconcile(ctx, kube)
    body = kube.body(SCHEDULES, "nightly")
    fake.fail(503, method="DELETE")

    with pytest.raises(RetryLater) as caught:
        await delete_schedule(ctx, body)
    assert "is not deleted yet" in str(caught.value)
    assert caught.value.delay >= 1
    assert len(fake.schedules()) == 1

    fake.clear_faults()
    await delete_schedule(ctx, body)
    assert fake.schedules() == []
    await delete_schedule(ctx, body)
    assert events.posted[-1][2:] == (
        "ScheduleDeleted", f"OpsCenter job schedule {body['status']['id']} was already gone "
                           "from cluster Test_Cluster")


async def test_a_missing_login_secret_is_a_condition_naming_it(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter) -> None:
    del kube.secrets["opscenter-login"]
    kube.put(SCHEDULES, _schedule(fake))

    await _reconcile(ctx, kube)

    ready = _condition(kube.status(SCHEDULES, "nightly"), "Ready")
    assert (ready["reason"], ready["message"]) == (
        "SecretNotFound", "spec.cluster.opscenter: Secret cassandra/opscenter-login not found")
    assert fake.requests == []


def _run(fake: FakeOpsCenter, keyspaces: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": models.API_VERSION, "kind": "BackupRun",
            "metadata": {"name": "adhoc", "namespace": NAMESPACE, "uid": "uid-adhoc"},
            "spec": {"cluster": _cluster(fake), "keyspaces": keyspaces, **spec}}


async def test_an_ad_hoc_run_records_each_nodes_answer(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events) -> None:
    fake.fail_node("10.11.12.152", "No space left on device")
    kube.put(RUNS, _run(fake, {"test": {"nodes": NODES}}))

    await execute_run(ctx, kube.body(RUNS, "adhoc"))

    (posted,) = fake.requests_to("POST", "/backups/run")
    assert posted.json == {"keyspaces": {"test": {"nodes": NODES}}}
    status = kube.status(RUNS, "adhoc")
    assert status["phase"] == "PartiallyFailed"
    assert status["nodesSucceeded"] == "1/2"
    by_node = {n["node"]: n for n in status["nodes"]}
    assert by_node["10.11.12.150"]["phase"] == "Succeeded"
    assert by_node["10.11.12.152"] == {**by_node["10.11.12.152"], "phase": "Failed",
                                       "error": "No space left on device"}
    assert status["keyspaces"] == {"test": {"nodes": ["10.11.12.150"], "size": 4543}}
    assert status["backupId"].startswith("opscenter_adhoc_2012-05-03-12-")
    assert ("Warning", "adhoc", "NodeFailed", "node 10.11.12.152: No space left on device") in \
        events.posted


async def test_an_unconfirmed_run_finds_its_backup_instead_of_posting_again(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter) -> None:
    # The answer of POST backups/run is awaited until the run's deadline, here 1 s.
    kube.put(RUNS, _run(fake, {"test": {}}, runDeadlineSeconds=1))
    fake.slow(2.5, method="POST", path="/backups/run", times=1)

    with pytest.raises(RetryLater, match="has not confirmed the backup"):
        await execute_run(ctx, kube.body(RUNS, "adhoc"))
    await execute_run(ctx, kube.body(RUNS, "adhoc"))

    assert len(fake.requests_to("POST", "/backups/run")) == 1
    status = kube.status(RUNS, "adhoc")
    assert status["phase"] == "Succeeded"
    assert [n["node"] for n in status["nodes"]] == NODES


async def test_a_refused_run_fails_with_opscenters_message(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter) -> None:
    kube.put(RUNS, _run(fake, {"nope": {}}))

    await execute_run(ctx, kube.body(RUNS, "adhoc"))

    status = kube.status(RUNS, "adhoc")
    assert status["phase"] == "Failed"
    assert _condition(status, "Complete")["message"].endswith(
        "with HTTP 400 (BadRequest): Unknown keyspace: cluster has no keyspace nope")


async def test_no_password_or_session_reaches_status_or_events(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter, events: Events,
        clock: Clock) -> None:
    kube.put(SCHEDULES, _schedule(fake))
    await _reconcile(ctx, kube)
    fake.expire_sessions(for_good=True)
    clock.now += timedelta(seconds=5)
    await _reconcile(ctx, kube)

    ready = _condition(kube.status(SCHEDULES, "nightly"), "Ready")
    assert ready["reason"] == "LoginFailed"
    seen = repr(kube.objects) + repr(events.posted)
    assert fake.sessions_issued
    for secret in [PASSWORD, *fake.sessions_issued]:
        assert secret not in seen


async def test_a_refused_login_is_asked_again_as_soon_as_the_secret_changes(
        ctx: OpsCenterContext, kube: MemoryKube, fake: FakeOpsCenter) -> None:
    kube.secrets["opscenter-login"] = {"username": "admin", "password": "wrong"}
    kube.put(SCHEDULES, _schedule(fake))

    await _reconcile(ctx, kube)
    await _reconcile(ctx, kube)

    ready = _condition(kube.status(SCHEDULES, "nightly"), "Ready")
    assert ready["reason"] == "LoginFailed"
    assert ready["message"].endswith("asked again when the spec or its Secrets change, or in "
                                     "10 minutes")
    assert len(fake.requests_to("POST", "/login")) == 1

    kube.secrets["opscenter-login"] = {"username": "admin", "password": PASSWORD}
    await _reconcile(ctx, kube)

    assert len(fake.schedules()) == 1
    assert _condition(kube.status(SCHEDULES, "nightly"), "Ready")["status"] == "True"


@pytest.mark.parametrize(("tag", "in_spec"), [
    pytest.param("opscenter_adhoc_2012-04-19-17-41-12-UTC", True, id="reference-tag"),
    pytest.param("-opscenter", False, id="leading-dash"),
    pytest.param("weekly:2012-04-19", False, id="colon"),
])
def test_a_mirrored_run_carries_only_a_tag_the_crd_admits(fake: FakeOpsCenter, tag: str,
                                                          in_spec: bool) -> None:
    backup = mapping.Backup(tag=tag, schedule_id="x", time=START,
                            keyspaces={"test": models.RunKeyspace(nodes=NODES, size=1)})
    spec = models.BackupScheduleSpec.model_validate(_schedule(fake)["spec"])

    body = mirror_body(schedule_body=_schedule(fake), spec=spec, backup=backup, name="n")

    assert ("tag" in body["spec"]) is in_spec
    assert body["metadata"]["annotations"][BACKUP_ANNOTATION] == tag
    assert mirror_status(backup, now=START)["tag"] == tag
