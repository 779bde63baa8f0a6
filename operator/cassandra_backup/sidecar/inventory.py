"""What snapshots exist on this node, read from the data directories rather than nodetool.

Cassandra keeps each table's snapshots under
`<data dir>/<keyspace>/<table>-<table id>/snapshots/<tag>/`, with secondary indexes in
hidden folders below that. The disk is the ground truth for sizes and for which
keyspaces a tag covers, and reading it needs no JVM, so listing is cheap and works while
Cassandra is down. `nodetool listsnapshots` prints rounded, human-formatted sizes and its
layout changes between versions; the folders do not.

Sizes add up every regular file under a tag's folders. Those files are hard links to
live SSTables, so the total is what the snapshot occupies if the live data goes away,
not extra space used today.

All functions here block on the file system; the server calls them from a thread.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cassandra_backup.models import KEYSPACE_PATTERN

_KEYSPACE_NAME: Final = re.compile(KEYSPACE_PATTERN)
MANIFEST_NAME: Final = "manifest.json"
SNAPSHOTS_FOLDER: Final = "snapshots"


@dataclass(frozen=True, kw_only=True)
class SnapshotOnDisk:
    """One tag as found on disk, over every data directory."""

    tag: str
    keyspace_sizes: Mapping[str, int]
    created_at: datetime

    @property
    def keyspaces(self) -> list[str]:
        return sorted(self.keyspace_sizes)

    @property
    def size_bytes(self) -> int:
        return sum(self.keyspace_sizes.values())


@dataclass(frozen=True, kw_only=True)
class _TableSnapshot:
    keyspace: str
    tag: str
    path: Path


def list_snapshots(data_dirs: Sequence[Path]) -> list[SnapshotOnDisk]:
    """Every tag on the node, oldest first."""
    found = _collect(_table_snapshots(data_dirs, tag=None))
    return sorted(found, key=lambda snapshot: (snapshot.created_at, snapshot.tag))


def find_snapshot(data_dirs: Sequence[Path], tag: str) -> SnapshotOnDisk | None:
    """The tag if any table of any keyspace has it, else None."""
    found = _collect(_table_snapshots(data_dirs, tag=tag))
    return found[0] if found else None


def keyspaces_with_tables(data_dirs: Sequence[Path]) -> frozenset[str]:
    """Keyspaces that have at least one table folder: the ones a snapshot can cover."""
    return frozenset(
        keyspace
        for data_dir in data_dirs
        for keyspace, keyspace_dir in _keyspace_dirs(data_dir)
        if any(True for _ in _table_dirs(keyspace_dir))
    )


def _collect(tables: Iterable[_TableSnapshot]) -> list[SnapshotOnDisk]:
    sizes: dict[str, dict[str, int]] = {}
    manifest_times: dict[str, list[datetime]] = {}
    folder_times: dict[str, list[datetime]] = {}

    for table in tables:
        folder_time = _mtime(table.path)
        if folder_time is None:
            continue
        folder_times.setdefault(table.tag, []).append(folder_time)
        manifest_time = _manifest_created_at(table.path / MANIFEST_NAME)
        if manifest_time is not None:
            manifest_times.setdefault(table.tag, []).append(manifest_time)
        per_keyspace = sizes.setdefault(table.tag, {})
        per_keyspace[table.keyspace] = per_keyspace.get(table.keyspace, 0) + _tree_size(table.path)

    # Tables of one tag are snapshotted a moment apart; the tag was created at the first.
    return [
        SnapshotOnDisk(
            tag=tag,
            keyspace_sizes=keyspace_sizes,
            created_at=min(manifest_times.get(tag) or folder_times[tag]),
        )
        for tag, keyspace_sizes in sizes.items()
    ]


def _table_snapshots(data_dirs: Sequence[Path], *, tag: str | None) -> Iterator[_TableSnapshot]:
    for data_dir in data_dirs:
        for keyspace, keyspace_dir in _keyspace_dirs(data_dir):
            for table_dir in _table_dirs(keyspace_dir):
                snapshots_dir = table_dir / SNAPSHOTS_FOLDER
                if tag is not None:
                    candidate = snapshots_dir / tag
                    if candidate.is_dir():
                        yield _TableSnapshot(keyspace=keyspace, tag=tag, path=candidate)
                    continue
                for entry in _subdirectories(snapshots_dir):
                    yield _TableSnapshot(keyspace=keyspace, tag=entry.name, path=Path(entry.path))


def _keyspace_dirs(data_dir: Path) -> Iterator[tuple[str, Path]]:
    for entry in _subdirectories(data_dir):
        if _KEYSPACE_NAME.fullmatch(entry.name):
            yield entry.name, Path(entry.path)


def _table_dirs(keyspace_dir: Path) -> Iterator[Path]:
    # Hidden folders are not tables (Cassandra keeps index data in `.<index>` folders, and
    # only inside a table's folder, but an operator's tooling may leave others).
    for entry in _subdirectories(keyspace_dir):
        if not entry.name.startswith("."):
            yield Path(entry.path)


def _subdirectories(path: Path) -> Iterator[os.DirEntry[str]]:
    # A folder may vanish while it is read (a concurrent clearsnapshot or a dropped table);
    # what is gone is simply not counted.
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    if entry.is_dir():
                        yield entry
                except OSError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return


def _tree_size(path: Path) -> int:
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                    elif entry.is_dir(follow_symlinks=False):
                        total += _tree_size(Path(entry.path))
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return total
    return total


def _manifest_created_at(manifest: Path) -> datetime | None:
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    created_at = document.get("created_at")
    if not isinstance(created_at, str):
        return None
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    except FileNotFoundError:
        return None
