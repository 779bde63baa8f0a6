"""Fan-out, phases, status batching and retention, with a fake node client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cassandra_backup import models
from cassandra_backup.discovery import Node
from cassandra_backup.runs import (
    FanOut,
    NodeError,
    NodeSnapshot,
    RunRecord,
    StatusBatcher,
    age,
    expired_runs,
    keyspace_listing,
    keyspaces_for_node,
    named_nodes_missing,
    overall_phase,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def node(address: str, unavailable: str | None = None) -> Node:
    return Node(address=address, url=f"http://{address}:9105", unavailable=unavailable)


def result(address: str, phase: models.NodePhase) -> models.NodeResult:
    return models.NodeResult(node=address, phase=phase)


class FakeTaker:
    def __init__(self, *, delays: dict[str, float] | None = None,
                 errors: dict[str, str] | None = None) -> None:
        self.delays = delays or {}
        self.errors = errors or {}
        self.calls: list[tuple[str, str, list[str]]] = []

    async def snapshot(self, node: Node, *, tag: str, keyspaces: list[str]) -> NodeSnapshot:
        self.calls.append((node.address, tag, keyspaces))
        await asyncio.sleep(self.delays.get(node.address, 0.0))
        if node.address in self.errors:
            raise NodeError(self.errors[node.address])
        return NodeSnapshot(size_bytes=100, keyspace_sizes={"ks": 60, "other": 40})

    async def clear(self, node: Node, *, tag: str) -> bool:
        return True


@pytest.mark.parametrize(("phases", "expected"), [
    pytest.param(["Succeeded", "Succeeded"], "Succeeded", id="all-succeeded"),
    pytest.param(["Succeeded", "Failed"], "PartiallyFailed", id="some-failed"),
    pytest.param(["Failed", "Failed"], "Failed", id="all-failed"),
    pytest.param([], "Failed", id="no-nodes"),
])
def test_overall_phase(phases: list[models.NodePhase], expected: str) -> None:
    results = [result(f"10.0.0.{i}", phase) for i, phase in enumerate(phases)]
    assert overall_phase(results) == expected


@pytest.mark.parametrize(("spec", "address", "expected"), [
    pytest.param({}, "10.0.0.1", [], id="empty-spec-means-all-keyspaces"),
    pytest.param({"b": {}, "a": {}}, "10.0.0.1", ["a", "b"], id="every-node-sorted"),
    pytest.param({"a": {"nodes": ["10.0.0.2"]}, "b": {}}, "10.0.0.1", ["b"], id="node-limited"),
    pytest.param({"a": {"nodes": ["10.0.0.2"]}}, "10.0.0.1", None, id="node-not-in-run"),
])
def test_keyspaces_for_node(spec: dict[str, Any], address: str,
                            expected: list[str] | None) -> None:
    keyspaces = {k: models.RunKeyspace.model_validate(v) for k, v in spec.items()}
    assert keyspaces_for_node(keyspaces, node(address)) == expected


def test_named_nodes_that_do_not_exist_are_reported() -> None:
    keyspaces = {"a": models.RunKeyspace(nodes=["10.0.0.1", "10.0.0.9"])}
    assert named_nodes_missing(keyspaces, [node("10.0.0.1")]) == ["10.0.0.9"]


def test_keyspace_listing_counts_only_succeeded_nodes() -> None:
    results = [result("10.0.0.1", "Succeeded"), result("10.0.0.2", "Failed"),
               result("10.0.0.3", "Succeeded")]
    sizes = {"10.0.0.1": {"ks": 10}, "10.0.0.2": {"ks": 99}, "10.0.0.3": {"ks": 5, "x": 1}}
    listing = keyspace_listing(results, sizes)
    assert listing["ks"].nodes == ["10.0.0.1", "10.0.0.3"]
    assert listing["ks"].size == 15
    assert listing["x"].size == 1


async def test_fan_out_is_concurrent_and_reports_each_node_as_it_lands() -> None:
    taker = FakeTaker(delays={"10.0.0.1": 0.3, "10.0.0.2": 0.0, "10.0.0.3": 0.1},
                      errors={"10.0.0.3": "sidecar answered 500: disk full"})
    fan_out = FanOut(tag="t1", deadline=datetime.now(UTC) + timedelta(seconds=60),
                     clock=lambda: datetime.now(UTC), taker=taker, deadline_seconds=60)
    landed: list[str] = []
    work = [(node(a), ["ks"]) for a in ("10.0.0.1", "10.0.0.2", "10.0.0.3")]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await fan_out.run(work, lambda r: landed.append(r.node))
    elapsed = loop.time() - started

    assert landed == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    assert elapsed < 0.6, "three nodes should take about as long as the slowest"
    assert fan_out.results["10.0.0.3"].phase == "Failed"
    assert fan_out.results["10.0.0.3"].error == "sidecar answered 500: disk full"
    assert fan_out.results["10.0.0.1"].sizeBytes == 100
    assert {call[1] for call in taker.calls} == {"t1"}


async def test_a_hung_node_fails_at_the_deadline() -> None:
    taker = FakeTaker(delays={"10.0.0.1": 30.0})
    fan_out = FanOut(tag="t", deadline=datetime.now(UTC) + timedelta(seconds=0.2),
                     clock=lambda: datetime.now(UTC), taker=taker, deadline_seconds=1)
    await fan_out.run([(node("10.0.0.1"), [])], lambda r: None)
    failed = fan_out.results["10.0.0.1"]
    assert failed.phase == "Failed"
    assert failed.error == "did not finish within the run deadline (1 s)"


async def test_an_unready_node_fails_without_a_request() -> None:
    taker = FakeTaker()
    fan_out = FanOut(tag="t", deadline=datetime.now(UTC) + timedelta(seconds=5),
                     clock=lambda: datetime.now(UTC), taker=taker, deadline_seconds=5)
    await fan_out.run([(node("10.0.0.1", unavailable="pod c-0 is not Ready"), [])],
                      lambda r: None)
    assert fan_out.results["10.0.0.1"].error == "pod c-0 is not Ready"
    assert taker.calls == []


async def test_fan_out_respects_the_concurrency_limit() -> None:
    running = 0
    peak = 0

    class Counting(FakeTaker):
        async def snapshot(self, node: Node, *, tag: str, keyspaces: list[str]) -> NodeSnapshot:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            return NodeSnapshot(size_bytes=1, keyspace_sizes={})

    fan_out = FanOut(tag="t", deadline=datetime.now(UTC) + timedelta(seconds=5),
                     clock=lambda: datetime.now(UTC), taker=Counting(), deadline_seconds=5,
                     limit=4)
    await fan_out.run([(node(f"10.0.1.{i}"), []) for i in range(20)], lambda r: None)
    assert peak == 4
    assert len(fan_out.results) == 20


async def test_status_batcher_coalesces_updates_into_few_writes() -> None:
    written: list[dict[str, Any]] = []

    async def write(patch: dict[str, Any]) -> None:
        written.append(patch)

    batcher = StatusBatcher(write, interval=0.2)
    for i in range(50):
        batcher.update({"nodes": i})
        await asyncio.sleep(0.01)
    await batcher.close()

    assert written[-1] == {"nodes": 49}, "the last value always lands"
    assert 2 <= len(written) <= 5


def record(name: str, hours_ago: int, phase: str | None) -> RunRecord:
    return RunRecord(name=name, scheduled_at=T0 - timedelta(hours=hours_ago), phase=phase)


def test_retention_removes_old_finished_runs_but_keeps_the_newest_success() -> None:
    runs = [record("old-ok", 50, "Succeeded"), record("old-failed", 49, "Failed"),
            record("old-partial", 48, "PartiallyFailed"), record("young", 1, "Succeeded")]
    expired = expired_runs(runs, now=T0, max_age=timedelta(hours=24))
    assert [r.name for r in expired] == ["old-ok", "old-failed", "old-partial"]


def test_retention_never_removes_the_only_successful_run_however_old() -> None:
    runs = [record("ancient-ok", 500, "Succeeded"), record("failed", 400, "Failed")]
    expired = expired_runs(runs, now=T0, max_age=timedelta(hours=1))
    assert [r.name for r in expired] == ["failed"]


def test_retention_leaves_active_runs_alone() -> None:
    runs = [record("running", 100, "Running"), record("pending", 100, None)]
    assert expired_runs(runs, now=T0, max_age=timedelta(hours=1)) == []


@pytest.mark.parametrize(("amount", "unit", "expected"), [
    pytest.param(90, "minutes", timedelta(minutes=90), id="minutes"),
    pytest.param(2, "hours", timedelta(hours=2), id="hours"),
    pytest.param(30, "days", timedelta(days=30), id="days"),
    pytest.param(1, "weeks", timedelta(days=7), id="weeks"),
])
def test_cleanup_age(amount: int, unit: models.IntervalUnit, expected: timedelta) -> None:
    assert age(amount, unit) == expected
