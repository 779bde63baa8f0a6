"""Reading snapshots from Cassandra's data directories: which tags, which keyspaces, bytes, time."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from cassandra_backup.sidecar.inventory import (
    find_snapshot,
    keyspaces_with_tables,
    list_snapshots,
)

TABLE_ID = "5a1c395e7d6a11ebb3f3f7a3b1e8c9d0"


def _table(data_dir: Path, keyspace: str, table: str) -> Path:
    table_dir = data_dir / keyspace / f"{table}-{TABLE_ID}"
    table_dir.mkdir(parents=True, exist_ok=True)
    return table_dir


def _snapshot(
    data_dir: Path,
    keyspace: str,
    table: str,
    tag: str,
    files: dict[str, int],
    *,
    created_at: str | None = None,
) -> Path:
    folder = _table(data_dir, keyspace, table) / "snapshots" / tag
    folder.mkdir(parents=True)
    for name, size in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"d" * size)
    if created_at is not None:
        (folder / "manifest.json").write_text(json.dumps({"created_at": created_at}))
    return folder


def _set_mtime(path: Path, moment: datetime) -> None:
    os.utime(path, (moment.timestamp(), moment.timestamp()))


def test_sizes_add_up_every_file_per_keyspace(tmp_path: Path) -> None:
    _snapshot(tmp_path, "ks1", "users", "nightly", {"nb-1-big-Data.db": 1000, "schema.cql": 24})
    _snapshot(tmp_path, "ks1", "events", "nightly", {"nb-2-big-Data.db": 500})
    _snapshot(tmp_path, "ks2", "orders", "nightly", {"nb-3-big-Data.db": 300})

    snapshot = find_snapshot([tmp_path], "nightly")

    assert snapshot is not None
    assert snapshot.keyspaces == ["ks1", "ks2"]
    assert dict(snapshot.keyspace_sizes) == {"ks1": 1524, "ks2": 300}
    assert snapshot.size_bytes == 1824


def test_index_folders_inside_a_snapshot_are_counted(tmp_path: Path) -> None:
    _snapshot(
        tmp_path,
        "ks1",
        "users",
        "nightly",
        {"nb-1-big-Data.db": 100, ".users_email_idx/nb-1-big-Data.db": 40},
    )

    snapshot = find_snapshot([tmp_path], "nightly")

    assert snapshot is not None
    assert snapshot.size_bytes == 140


def test_live_sstables_and_incremental_backups_are_not_counted(tmp_path: Path) -> None:
    folder = _snapshot(tmp_path, "ks1", "users", "nightly", {"nb-1-big-Data.db": 100})
    table_dir = folder.parent.parent
    (table_dir / "nb-1-big-Data.db").write_bytes(b"x" * 9999)
    (table_dir / "backups").mkdir()
    (table_dir / "backups" / "nb-1-big-Data.db").write_bytes(b"x" * 7777)

    snapshot = find_snapshot([tmp_path], "nightly")

    assert snapshot is not None
    assert snapshot.size_bytes == 100


def test_one_tag_over_several_data_directories_is_one_snapshot(tmp_path: Path) -> None:
    first, second = tmp_path / "data1", tmp_path / "data2"
    _snapshot(first, "ks1", "users", "nightly", {"a": 10})
    _snapshot(second, "ks1", "users", "nightly", {"b": 20})
    _snapshot(second, "ks2", "orders", "nightly", {"c": 30})

    snapshot = find_snapshot([first, second], "nightly")

    assert snapshot is not None
    assert dict(snapshot.keyspace_sizes) == {"ks1": 30, "ks2": 30}


def test_unknown_tag_is_not_found(tmp_path: Path) -> None:
    _snapshot(tmp_path, "ks1", "users", "nightly", {"a": 10})

    assert find_snapshot([tmp_path], "weekly") is None


def test_missing_data_directory_holds_no_snapshots(tmp_path: Path) -> None:
    assert list_snapshots([tmp_path / "absent"]) == []
    assert find_snapshot([tmp_path / "absent"], "nightly") is None


def test_creation_time_comes_from_the_earliest_manifest(tmp_path: Path) -> None:
    _snapshot(tmp_path, "ks1", "a", "t", {"f": 1}, created_at="2024-03-10T02:30:00.120Z")
    _snapshot(tmp_path, "ks1", "b", "t", {"f": 1}, created_at="2024-03-10T02:29:59.900Z")

    snapshot = find_snapshot([tmp_path], "t")

    assert snapshot is not None
    assert snapshot.created_at == datetime(2024, 3, 10, 2, 29, 59, 900000, tzinfo=UTC)


def test_manifest_time_with_an_offset_is_given_in_utc(tmp_path: Path) -> None:
    _snapshot(tmp_path, "ks1", "a", "t", {"f": 1}, created_at="2024-03-10T03:30:00+01:00")

    snapshot = find_snapshot([tmp_path], "t")

    assert snapshot is not None
    assert snapshot.created_at == datetime(2024, 3, 10, 2, 30, tzinfo=UTC)


def test_creation_time_falls_back_to_the_folder_mtime(tmp_path: Path) -> None:
    folder = _snapshot(tmp_path, "ks1", "a", "t", {"f": 1})
    _set_mtime(folder, datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC))

    snapshot = find_snapshot([tmp_path], "t")

    assert snapshot is not None
    assert snapshot.created_at == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_unreadable_manifest_falls_back_to_the_folder_mtime(tmp_path: Path) -> None:
    folder = _snapshot(tmp_path, "ks1", "a", "t", {"f": 1})
    (folder / "manifest.json").write_text("{not json")
    _set_mtime(folder, datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC))

    snapshot = find_snapshot([tmp_path], "t")

    assert snapshot is not None
    assert snapshot.created_at == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert snapshot.size_bytes == 1 + len("{not json")


def test_listing_has_every_tag_oldest_first(tmp_path: Path) -> None:
    _snapshot(tmp_path, "ks1", "a", "new", {"f": 5}, created_at="2024-05-01T00:00:00Z")
    _snapshot(tmp_path, "ks1", "a", "old", {"f": 7}, created_at="2024-04-01T00:00:00Z")
    _snapshot(tmp_path, "ks2", "b", "new", {"f": 11}, created_at="2024-05-01T00:00:01Z")

    listing = list_snapshots([tmp_path])

    assert [(s.tag, s.keyspaces) for s in listing] == [("old", ["ks1"]), ("new", ["ks1", "ks2"])]
    assert listing[1].created_at == datetime(2024, 5, 1, tzinfo=UTC)


def test_folders_that_are_not_keyspaces_or_tables_are_ignored(tmp_path: Path) -> None:
    _snapshot(tmp_path, "ks1", "a", "t", {"f": 5})
    (tmp_path / "lost+found" / f"x-{TABLE_ID}" / "snapshots" / "t").mkdir(parents=True)
    (tmp_path / "ks1" / ".hidden" / "snapshots" / "t").mkdir(parents=True)
    (tmp_path / "ks1" / ".hidden" / "snapshots" / "t" / "f").write_bytes(b"x" * 100)
    (tmp_path / "stray-file").write_text("not a keyspace")

    snapshot = find_snapshot([tmp_path], "t")

    assert snapshot is not None
    assert dict(snapshot.keyspace_sizes) == {"ks1": 5}


def test_keyspaces_with_tables_leaves_out_empty_keyspaces(tmp_path: Path) -> None:
    first, second = tmp_path / "data1", tmp_path / "data2"
    _table(first, "ks1", "users")
    _table(second, "ks2", "orders")
    (first / "empty_ks").mkdir()
    (first / "lost+found" / "x").mkdir(parents=True)

    assert keyspaces_with_tables([first, second]) == frozenset({"ks1", "ks2"})
