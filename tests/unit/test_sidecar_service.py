"""The snapshot rules: a repeated request is the same snapshot, a different one is a conflict."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cassandra_backup.sidecar.inventory import SnapshotOnDisk
from cassandra_backup.sidecar.nodetool import CassandraUnreachable, SnapshotAlreadyExists
from cassandra_backup.sidecar.service import (
    ReadinessProbe,
    SnapshotConflict,
    SnapshotNotFound,
    SnapshotService,
    is_same_snapshot,
)

SCHEMA = {
    "system": ["local"],
    "system_schema": ["tables"],
    "ks1": ["users", "events"],
    "ks2": ["orders"],
}


def _on_disk(*keyspaces: str) -> SnapshotOnDisk:
    return SnapshotOnDisk(
        tag="t",
        keyspace_sizes={keyspace: 1 for keyspace in keyspaces},
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


WITH_TABLES = frozenset({"system", "system_schema", "ks1", "ks2"})


@pytest.mark.parametrize(
    ("existing", "requested", "same"),
    [
        pytest.param(_on_disk("ks1"), ["ks1"], True, id="same-keyspace"),
        pytest.param(_on_disk("ks1", "ks2"), ["ks2", "ks1"], True, id="same-in-other-order"),
        pytest.param(_on_disk("ks1"), ["ks1", "empty_ks"], True, id="asked-keyspace-has-no-table"),
        pytest.param(_on_disk("ks1"), ["ks2"], False, id="other-keyspace"),
        pytest.param(_on_disk("ks1"), ["ks1", "ks2"], False, id="more-keyspaces"),
        pytest.param(_on_disk("ks1", "ks2"), ["ks1"], False, id="fewer-keyspaces"),
        pytest.param(
            _on_disk("system", "system_schema", "ks1", "ks2"), [], True, id="every-keyspace-again"
        ),
        pytest.param(_on_disk("ks1", "ks2"), [], False, id="every-keyspace-after-named"),
        pytest.param(
            _on_disk("system", "system_schema", "ks1", "ks2"),
            ["ks1", "ks2"],
            False,
            id="named-after-every-keyspace",
        ),
    ],
)
def test_is_same_snapshot(existing: SnapshotOnDisk, requested: list[str], same: bool) -> None:
    assert is_same_snapshot(existing, requested, keyspaces_with_tables=WITH_TABLES) is same


class FolderNodetool:
    """Makes and removes snapshot folders the way Cassandra does, and counts its calls."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.snapshot_calls: list[tuple[str, list[str]]] = []
        self.clear_calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.failure: Exception | None = None
        self.made_elsewhere_first = False
        self.entered: asyncio.Queue[str] = asyncio.Queue()

    async def snapshot(self, *, tag: str, keyspaces: Sequence[str]) -> None:
        self.snapshot_calls.append((tag, list(keyspaces)))
        self.entered.put_nowait(tag)
        if self.gate is not None:
            await self.gate.wait()
        if self.made_elsewhere_first:
            make_snapshot(self.data_dir, tag, keyspaces)
            raise SnapshotAlreadyExists(f"error: Snapshot {tag} already exists.")
        if self.failure is not None:
            raise self.failure
        make_snapshot(self.data_dir, tag, keyspaces or list(SCHEMA))

    async def clear_snapshot(self, *, tag: str) -> None:
        self.clear_calls.append(tag)
        for folder in self.data_dir.glob(f"*/*/snapshots/{tag}"):
            shutil.rmtree(folder)


def make_snapshot(data_dir: Path, tag: str, keyspaces: Sequence[str]) -> None:
    for keyspace in keyspaces:
        for table in SCHEMA[keyspace]:
            folder = data_dir / keyspace / f"{table}-0123456789abcdef" / "snapshots" / tag
            folder.mkdir(parents=True)
            (folder / "nb-1-big-Data.db").write_bytes(b"x" * 100)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    for keyspace, tables in SCHEMA.items():
        for table in tables:
            (tmp_path / keyspace / f"{table}-0123456789abcdef").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def nodetool(data_dir: Path) -> FolderNodetool:
    return FolderNodetool(data_dir)


@pytest.fixture
def service(nodetool: FolderNodetool, data_dir: Path) -> SnapshotService:
    return SnapshotService(nodetool=nodetool, data_dirs=[data_dir])


async def test_new_tag_is_snapshotted_and_measured(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    outcome = await service.take(tag="nightly", keyspaces=["ks1"])

    assert outcome.created is True
    assert outcome.snapshot.keyspaces == ["ks1"]
    assert outcome.snapshot.size_bytes == 200
    assert nodetool.snapshot_calls == [("nightly", ["ks1"])]


async def test_repeated_request_answers_the_existing_snapshot_without_nodetool(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    await service.take(tag="nightly", keyspaces=["ks1"])

    again = await service.take(tag="nightly", keyspaces=["ks1"])

    assert again.created is False
    assert again.snapshot.size_bytes == 200
    assert len(nodetool.snapshot_calls) == 1


async def test_repeated_every_keyspace_request_is_the_same_snapshot(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    first = await service.take(tag="nightly", keyspaces=[])

    again = await service.take(tag="nightly", keyspaces=[])

    assert first.snapshot.keyspaces == ["ks1", "ks2", "system", "system_schema"]
    assert again.created is False
    assert len(nodetool.snapshot_calls) == 1


async def test_same_tag_with_other_keyspaces_is_a_conflict(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    await service.take(tag="nightly", keyspaces=["ks1"])

    with pytest.raises(SnapshotConflict) as caught:
        await service.take(tag="nightly", keyspaces=["ks2"])

    assert str(caught.value) == (
        "snapshot 'nightly' already exists on this node with keyspaces ks1, not ks2; "
        "use another tag or clear this one first"
    )
    assert len(nodetool.snapshot_calls) == 1


async def test_concurrent_identical_requests_make_one_snapshot(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    nodetool.gate = asyncio.Event()
    first = asyncio.create_task(service.take(tag="nightly", keyspaces=["ks1"]))
    second = asyncio.create_task(service.take(tag="nightly", keyspaces=["ks1"]))
    await asyncio.sleep(0.05)
    nodetool.gate.set()

    outcomes = await asyncio.gather(first, second)

    assert sorted(outcome.created for outcome in outcomes) == [False, True]
    assert nodetool.snapshot_calls == [("nightly", ["ks1"])]


async def test_requests_for_different_tags_do_not_wait_for_each_other(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    nodetool.gate = asyncio.Event()
    first = asyncio.create_task(service.take(tag="a", keyspaces=["ks1"]))
    second = asyncio.create_task(service.take(tag="b", keyspaces=["ks1"]))

    # Both reach nodetool while the first is still held there; a shared lock would hang.
    await asyncio.wait_for(asyncio.gather(nodetool.entered.get(), nodetool.entered.get()), 30)
    nodetool.gate.set()
    await asyncio.gather(first, second)

    assert sorted(tag for tag, _ in nodetool.snapshot_calls) == ["a", "b"]


async def test_tag_made_elsewhere_meanwhile_is_answered_as_existing(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    nodetool.made_elsewhere_first = True

    outcome = await service.take(tag="nightly", keyspaces=["ks1"])

    assert outcome.created is False
    assert outcome.snapshot.keyspaces == ["ks1"]


async def test_nodetool_failure_reaches_the_caller(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    nodetool.failure = CassandraUnreachable("Cassandra is not reachable over JMX at x")

    with pytest.raises(CassandraUnreachable):
        await service.take(tag="nightly", keyspaces=["ks1"])


async def test_snapshot_without_folders_is_reported_empty(
    nodetool: FolderNodetool, data_dir: Path
) -> None:
    moment = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    elsewhere = data_dir.parent / "not-the-data-dir"
    service = SnapshotService(nodetool=nodetool, data_dirs=[elsewhere], clock=lambda: moment)

    outcome = await service.take(tag="nightly", keyspaces=["ks1"])

    assert outcome.created is True
    assert outcome.snapshot.keyspaces == []
    assert outcome.snapshot.size_bytes == 0
    assert outcome.snapshot.created_at == moment


async def test_clearing_removes_the_tag(service: SnapshotService, nodetool: FolderNodetool) -> None:
    await service.take(tag="nightly", keyspaces=["ks1"])

    await service.clear(tag="nightly")

    assert nodetool.clear_calls == ["nightly"]
    assert await service.snapshots() == []


async def test_clearing_an_unknown_tag_is_not_found_and_runs_no_nodetool(
    service: SnapshotService, nodetool: FolderNodetool
) -> None:
    with pytest.raises(SnapshotNotFound) as caught:
        await service.clear(tag="nightly")

    assert str(caught.value) == "no snapshot with tag 'nightly' on this node"
    assert nodetool.clear_calls == []


async def test_listing_shows_each_tag(service: SnapshotService) -> None:
    await service.take(tag="a", keyspaces=["ks1"])
    await service.take(tag="b", keyspaces=["ks2"])

    listing = await service.snapshots()

    assert sorted((s.tag, s.keyspaces, s.size_bytes) for s in listing) == [
        ("a", ["ks1"], 200),
        ("b", ["ks2"], 100),
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingCheck:
    def __init__(self) -> None:
        self.calls = 0
        self.failure: Exception | None = None

    async def __call__(self) -> None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.failure is not None:
            raise self.failure


async def test_readiness_is_checked_once_per_ttl() -> None:
    clock, check = FakeClock(), CountingCheck()
    probe = ReadinessProbe(check, ttl_seconds=5.0, clock=clock)

    first = await probe.current()
    clock.now += 4.9
    second = await probe.current()

    assert first.ready and second.ready
    assert check.calls == 1


async def test_readiness_is_checked_again_after_the_ttl() -> None:
    clock, check = FakeClock(), CountingCheck()
    probe = ReadinessProbe(check, ttl_seconds=5.0, clock=clock)
    await probe.current()

    check.failure = CassandraUnreachable("Cassandra is not reachable over JMX at 127.0.0.1:7199")
    clock.now += 5.0
    answer = await probe.current()

    assert check.calls == 2
    assert answer.ready is False
    assert answer.reason == "Cassandra is not reachable over JMX at 127.0.0.1:7199"


async def test_concurrent_readiness_probes_share_one_check() -> None:
    clock, check = FakeClock(), CountingCheck()
    probe = ReadinessProbe(check, ttl_seconds=5.0, clock=clock)

    answers = await asyncio.gather(*(probe.current() for _ in range(5)))

    assert all(answer.ready for answer in answers)
    assert check.calls == 1


async def test_existing_tag_nodetool_sees_but_the_disk_does_not_points_at_data_dirs(
    nodetool: FolderNodetool, data_dir: Path
) -> None:
    service = SnapshotService(nodetool=nodetool, data_dirs=[data_dir.parent / "elsewhere"])
    nodetool.failure = SnapshotAlreadyExists("error: Snapshot nightly already exists.")

    with pytest.raises(SnapshotAlreadyExists) as caught:
        await service.take(tag="nightly", keyspaces=["ks1"])

    assert str(caught.value) == (
        f"error: Snapshot nightly already exists. No folder of it is under "
        f"{data_dir.parent / 'elsewhere'}: --data-dir must name every data directory of this node"
    )
