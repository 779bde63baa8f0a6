#!/usr/bin/env python3
"""A stand-in for `nodetool` that works on real folders, for tests and benchmarks.

It takes the arguments the sidecar passes (`-h HOST -p PORT` then `snapshot -t TAG
[-- ks...]`, `clearsnapshot -t TAG`, `version` or `listsnapshots`) and does to a data
directory what Cassandra would: a snapshot hard-links each table's files into
`<data>/<keyspace>/<table>-<id>/snapshots/<tag>/` beside a `manifest.json` and a
`schema.cql`, and clearing removes those folders. The sidecar reads sizes from disk, so
what the fake writes is what the sidecar reports.

Environment:

- FAKE_NODETOOL_DATA_DIR: the data directory (required by snapshot, clearsnapshot and
  listsnapshots).
- FAKE_NODETOOL_DELAY: seconds to sleep before doing anything.
- FAKE_NODETOOL_DOWN=1: fail as nodetool does when the JMX port refuses connections.
- FAKE_NODETOOL_FAIL=text: make `snapshot` fail with exit code 2 and that text on stderr,
  as a node whose disk is full or whose sstables are unreadable would.
- FAKE_NODETOOL_LOG: a file to which one JSON array of arguments is appended per call.

Only the standard library is used, so any Python 3.11 can run it. `seed_data_dir` (or
the extra command `fake-seed KS:TABLE,TABLE ...`) lays out live tables to snapshot, and
`install_launcher` writes an executable `nodetool` that runs this file with a chosen
interpreter, for callers that cannot rely on the executable bit or on `python3`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

RELEASE_VERSION = "5.0.4"

# Each seeded table holds these files; their sizes are what a snapshot of it adds up to,
# beside its manifest.json and schema.cql.
TABLE_FILES: dict[str, int] = {
    "nb-1-big-Data.db": 4096,
    "nb-1-big-Index.db": 512,
    "nb-1-big-Statistics.db": 256,
    "nb-1-big-TOC.txt": 64,
}
TABLE_FILES_BYTES = sum(TABLE_FILES.values())

SYSTEM_TABLES: dict[str, list[str]] = {
    "system": ["local", "peers_v2"],
    "system_schema": ["keyspaces", "tables"],
}


def table_folder_name(keyspace: str, table: str) -> str:
    """`<table>-<32 hex>` as Cassandra names it; the id is derived so reruns agree."""
    table_id = hashlib.md5(f"{keyspace}.{table}".encode(), usedforsecurity=False).hexdigest()
    return f"{table}-{table_id}"


def seed_data_dir(
    data_dir: Path, keyspaces: Mapping[str, Sequence[str]], *, include_system: bool = True
) -> None:
    """Create live tables (with `TABLE_FILES`) for each keyspace, and the system ones."""
    schema = {**(SYSTEM_TABLES if include_system else {}), **keyspaces}
    for keyspace, tables in schema.items():
        for table in tables:
            table_dir = data_dir / keyspace / table_folder_name(keyspace, table)
            table_dir.mkdir(parents=True, exist_ok=True)
            for name, size in TABLE_FILES.items():
                (table_dir / name).write_bytes(b"x" * size)


def install_launcher(directory: Path, *, python: str = sys.executable) -> Path:
    """Write `<directory>/nodetool`, an executable that runs this fake with `python`."""
    launcher = directory / "nodetool"
    launcher.write_text(f'#!/bin/sh\nexec "{python}" "{Path(__file__).resolve()}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


def _bad_use(message: str) -> int:
    return _fail(f"nodetool: {message}\nSee 'nodetool help' or 'nodetool help <command>'.", 1)


def _already_exists(tag: str) -> int:
    return _fail(
        f"error: Snapshot {tag} already exists.\n-- StackTrace --\n"
        f"java.io.IOException: Snapshot {tag} already exists.",
        1,
    )


def _data_dir() -> Path | None:
    value = os.environ.get("FAKE_NODETOOL_DATA_DIR")
    return Path(value) if value else None


def _keyspace_dirs(data_dir: Path) -> list[Path]:
    if not data_dir.is_dir():
        return []
    return sorted(path for path in data_dir.iterdir() if path.is_dir())


def _table_dirs(keyspace_dir: Path) -> list[Path]:
    return sorted(
        path for path in keyspace_dir.iterdir() if path.is_dir() and not path.name.startswith(".")
    )


def _split_options(args: Sequence[str]) -> tuple[dict[str, str | None], list[str]]:
    """Options of a subcommand (`-t TAG`, flags) and its positional arguments."""
    options: dict[str, str | None] = {}
    positional: list[str] = []
    with_value = {"-t", "--tag", "-kt", "--kt-list", "-cf", "--column-family", "--ttl"}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            positional.extend(args[index + 1 :])
            break
        if arg in with_value:
            if index + 1 >= len(args):
                raise ValueError(f"Required values for option '{arg}' not provided")
            options[arg] = args[index + 1]
            index += 2
            continue
        if arg.startswith("-"):
            options[arg] = None
        else:
            positional.append(arg)
        index += 1
    return options, positional


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _snapshot(data_dir: Path, args: Sequence[str]) -> int:
    options, keyspaces = _split_options(args)
    tag = options.get("-t") or options.get("--tag") or str(int(time.time() * 1000))
    all_keyspaces = not keyspaces

    if all_keyspaces:
        targets = _keyspace_dirs(data_dir)
    else:
        targets = []
        for keyspace in keyspaces:
            keyspace_dir = data_dir / keyspace
            if not keyspace_dir.is_dir():
                return _bad_use(f"Keyspace {keyspace} does not exist")
            targets.append(keyspace_dir)

    tables = [table for keyspace_dir in targets for table in _table_dirs(keyspace_dir)]
    if any((table / "snapshots" / tag).exists() for table in tables):
        return _already_exists(tag)

    created_at = _now_text()
    for table in tables:
        snapshot_dir = table / "snapshots" / tag
        try:
            snapshot_dir.mkdir(parents=True)
        except FileExistsError:
            return _already_exists(tag)
        files = sorted(path for path in table.iterdir() if path.is_file())
        for path in files:
            try:
                os.link(path, snapshot_dir / path.name)
            except OSError:
                shutil.copy2(path, snapshot_dir / path.name)
        manifest = {
            "files": [path.name for path in files],
            "created_at": created_at,
            "expires_at": None,
            "ephemeral": False,
        }
        (snapshot_dir / "manifest.json").write_text(json.dumps(manifest))
        keyspace, table_name = table.parent.name, table.name.rsplit("-", 1)[0]
        (snapshot_dir / "schema.cql").write_text(
            f"CREATE TABLE IF NOT EXISTS {keyspace}.{table_name} (id uuid PRIMARY KEY);\n"
        )

    named = "all keyspaces" if all_keyspaces else ", ".join(keyspaces)
    print(
        f"Requested creating snapshot(s) for [{named}] with snapshot name [{tag}] and "
        "options {skipFlush=false}"
    )
    print(f"Snapshot directory: {tag}")
    return 0


def _clear_snapshot(data_dir: Path, args: Sequence[str]) -> int:
    options, keyspaces = _split_options(args)
    tag = options.get("-t") or options.get("--tag")
    clear_all = "--all" in options
    if not tag and not clear_all:
        return _bad_use("Specify snapshot name or --all")

    targets = [data_dir / ks for ks in keyspaces] if keyspaces else _keyspace_dirs(data_dir)
    for keyspace_dir in targets:
        if not keyspace_dir.is_dir():
            continue
        for table in _table_dirs(keyspace_dir):
            snapshots = table / "snapshots"
            doomed = [snapshots] if clear_all else [snapshots / str(tag)]
            for path in doomed:
                shutil.rmtree(path, ignore_errors=True)

    named = ", ".join(keyspaces) if keyspaces else "all keyspaces"
    which = "all snapshots" if clear_all else f"snapshot name [{tag}]"
    print(f"Requested clearing snapshot(s) for [{named}] with {which}")
    return 0


def _list_snapshots(data_dir: Path) -> int:
    rows: list[tuple[str, str, str, int, str]] = []
    for keyspace_dir in _keyspace_dirs(data_dir):
        for table in _table_dirs(keyspace_dir):
            snapshots = table / "snapshots"
            if not snapshots.is_dir():
                continue
            for snapshot_dir in sorted(snapshots.iterdir()):
                size = sum(p.stat().st_size for p in snapshot_dir.rglob("*") if p.is_file())
                try:
                    manifest = json.loads((snapshot_dir / "manifest.json").read_text())
                    created = str(manifest.get("created_at"))
                except (OSError, ValueError):
                    created = ""
                table_name = table.name.rsplit("-", 1)[0]
                rows.append((snapshot_dir.name, keyspace_dir.name, table_name, size, created))

    print("Snapshot Details: ")
    if not rows:
        print("There are no snapshots")
        return 0
    print("Snapshot name Keyspace name Column family name True size Size on disk Creation time")
    for tag, keyspace, table_name, size, created in rows:
        print(f"{tag} {keyspace} {table_name} 0 bytes {size} bytes {created}")
    print()
    print("Total TrueDiskSpaceUsed: 0 bytes")
    print()
    return 0


def _fake_seed(data_dir: Path, args: Sequence[str]) -> int:
    keyspaces: dict[str, list[str]] = {}
    for spec in args:
        keyspace, _, tables = spec.partition(":")
        keyspaces[keyspace] = [t for t in tables.split(",") if t] or ["t1"]
    seed_data_dir(data_dir, keyspaces)
    return 0


def main(argv: Sequence[str]) -> int:
    log_path = os.environ.get("FAKE_NODETOOL_LOG")
    if log_path:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(list(argv)) + "\n")

    host, port = "127.0.0.1", "7199"
    args = list(argv)
    while args and args[0] in {"-h", "--host", "-p", "--port", "-u", "-pw"}:
        if len(args) < 2:
            return _bad_use(f"Required values for option '{args[0]}' not provided")
        if args[0] in {"-h", "--host"}:
            host = args[1]
        elif args[0] in {"-p", "--port"}:
            port = args[1]
        args = args[2:]
    if not args:
        return _bad_use("No command given")
    command, rest = args[0], args[1:]

    delay = float(os.environ.get("FAKE_NODETOOL_DELAY") or 0)
    if delay > 0:
        time.sleep(delay)

    if command == "fake-seed":
        data_dir = _data_dir()
        if data_dir is None:
            return _fail("fake nodetool: set FAKE_NODETOOL_DATA_DIR", 3)
        return _fake_seed(data_dir, rest)

    if os.environ.get("FAKE_NODETOOL_DOWN") == "1":
        return _fail(
            f"nodetool: Failed to connect to '{host}:{port}' - ConnectException: "
            "'Connection refused (Connection refused)'.",
            2,
        )

    if command == "version":
        print(f"ReleaseVersion: {RELEASE_VERSION}")
        return 0
    failure = os.environ.get("FAKE_NODETOOL_FAIL")
    if failure and command == "snapshot":
        return _fail(failure, 2)
    if command not in {"snapshot", "clearsnapshot", "listsnapshots"}:
        return _bad_use(f"Found unexpected parameters: [{command}]")

    data_dir = _data_dir()
    if data_dir is None:
        return _fail("fake nodetool: set FAKE_NODETOOL_DATA_DIR", 3)
    try:
        if command == "snapshot":
            return _snapshot(data_dir, rest)
        if command == "clearsnapshot":
            return _clear_snapshot(data_dir, rest)
        return _list_snapshots(data_dir)
    except ValueError as exc:
        return _bad_use(str(exc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
