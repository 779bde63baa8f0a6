"""The real Cassandra node and the real nodetool behave as the sidecar expects.

The sidecar parses what nodetool prints and looks at the folders a snapshot leaves, so
these tests pin down exactly that on a real 5.0 node: the lines `snapshot`,
`listsnapshots` and `clearsnapshot` print, their exit codes, and the layout of
`<data>/<keyspace>/<table>-<id>/snapshots/<tag>/`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from support.cassandra import CassandraNode, free_port

pytestmark = pytest.mark.e2e

LISTSNAPSHOTS_HEADER = (
    "Snapshot name",
    "Keyspace name",
    "Column family name",
    "True size",
    "Size on disk",
    "Creation time",
    "Expiration time",
)


@dataclass(frozen=True)
class ListedSnapshot:
    """One row of `nodetool listsnapshots`: one table of one tag."""

    tag: str
    keyspace: str
    table: str
    true_size: str
    size_on_disk: str
    created_at: str
    expires_at: str | None


def parse_listsnapshots(stdout: str) -> list[ListedSnapshot]:
    """The rows of `nodetool listsnapshots`; sizes are a number and a unit ("8.64 KiB")."""
    rows = []
    for line in stdout.splitlines()[2:]:
        if not line.strip():
            break
        fields = line.split()
        rows.append(
            ListedSnapshot(
                tag=fields[0],
                keyspace=fields[1],
                table=fields[2],
                true_size=" ".join(fields[3:5]),
                size_on_disk=" ".join(fields[5:7]),
                created_at=fields[7],
                expires_at=fields[8] if len(fields) > 8 else None,
            )
        )
    return rows


def create_table_with_rows(cql: Any, keyspace: str, table: str, rows: int) -> None:
    # Names are the test's own, never outside input.
    cql.execute(f"CREATE TABLE {keyspace}.{table} (id int PRIMARY KEY, item text)")
    insert = cql.prepare(f"INSERT INTO {keyspace}.{table} (id, item) VALUES (?, ?)")
    for number in range(rows):
        cql.execute(insert, (number, f"item-{number}"))


def table_dir(node: CassandraNode, cql: Any, keyspace: str, table: str) -> Path:
    """Where Cassandra keeps a table: `<data>/<keyspace>/<table>-<table id without dashes>`."""
    row = cql.execute(
        "SELECT id FROM system_schema.tables WHERE keyspace_name = %s AND table_name = %s",
        (keyspace, table),
    ).one()
    return node.data_dir / keyspace / f"{table}-{row.id.hex}"


def snapshot(node: CassandraNode, tag: str, *keyspaces: str) -> list[str]:
    result = node.nodetool("snapshot", "-t", tag, "--", *keyspaces)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_node_answers_cql_as_the_named_cluster_on_cassandra_5_0(cql: Any) -> None:
    row = cql.execute("SELECT cluster_name, release_version FROM system.local").one()

    assert row.cluster_name == "E2E_Cluster"
    assert row.release_version.startswith("5.0.")


def test_rows_written_through_the_driver_are_read_back(keyspace: str, cql: Any) -> None:
    create_table_with_rows(cql, keyspace, "orders", rows=25)

    rows = cql.execute(f"SELECT id, item FROM {keyspace}.orders")

    assert sorted((row.id, row.item) for row in rows) == [(n, f"item-{n}") for n in range(25)]


def test_nodetool_reports_the_node_up_and_normal(cassandra_node: CassandraNode) -> None:
    result = cassandra_node.nodetool("status")

    assert result.returncode == 0
    node_lines = [line for line in result.stdout.splitlines() if "127.0.0.1" in line]
    assert [line.split()[0] for line in node_lines] == ["UN"]


def test_snapshot_prints_the_request_and_the_tag(
    cassandra_node: CassandraNode, keyspace: str, cql: Any
) -> None:
    create_table_with_rows(cql, keyspace, "orders", rows=10)

    lines = snapshot(cassandra_node, "nightly-20260101-0000", keyspace)

    assert lines == [
        f"Requested creating snapshot(s) for [{keyspace}] with snapshot name "
        "[nightly-20260101-0000] and options {skipFlush=false}",
        "Snapshot directory: nightly-20260101-0000",
    ]


def test_snapshot_folder_holds_the_flushed_sstables_a_manifest_and_the_schema(
    cassandra_node: CassandraNode, keyspace: str, cql: Any
) -> None:
    create_table_with_rows(cql, keyspace, "orders", rows=100)

    snapshot(cassandra_node, "first", keyspace)

    folder = table_dir(cassandra_node, cql, keyspace, "orders") / "snapshots" / "first"
    names = sorted(path.name for path in folder.iterdir())
    data_files = [name for name in names if name.endswith("-Data.db")]
    assert len(data_files) == 1
    assert {"manifest.json", "schema.cql"} <= set(names)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest) == ["created_at", "ephemeral", "expires_at", "files"]
    assert manifest["files"] == data_files
    assert manifest["expires_at"] is None
    assert manifest["ephemeral"] is False
    assert manifest["created_at"].endswith("Z")
    assert datetime.fromisoformat(manifest["created_at"]).utcoffset() is not None
    schema = (folder / "schema.cql").read_text()
    assert schema.startswith(f"CREATE TABLE IF NOT EXISTS {keyspace}.orders (")


def test_snapshot_of_a_table_without_data_has_a_manifest_with_no_files(
    cassandra_node: CassandraNode, keyspace: str, cql: Any
) -> None:
    create_table_with_rows(cql, keyspace, "empty", rows=0)

    snapshot(cassandra_node, "first", keyspace)

    folder = table_dir(cassandra_node, cql, keyspace, "empty") / "snapshots" / "first"
    assert sorted(path.name for path in folder.iterdir()) == ["manifest.json", "schema.cql"]
    assert json.loads((folder / "manifest.json").read_text())["files"] == []


def test_listsnapshots_prints_one_row_per_table_of_each_tag(
    cassandra_node: CassandraNode, make_keyspace: Callable[[], str], cql: Any
) -> None:
    shop, stock = make_keyspace(), make_keyspace()
    for keyspace in (shop, stock):
        create_table_with_rows(cql, keyspace, "orders", rows=10)
        create_table_with_rows(cql, keyspace, "returns", rows=3)
    snapshot(cassandra_node, "both", shop, stock)
    snapshot(cassandra_node, "shop-only", shop)

    result = cassandra_node.nodetool("listsnapshots")

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "Snapshot Details:"
    # Columns are padded to their widest cell, so only the words are fixed.
    assert " ".join(lines[1].split()) == " ".join(LISTSNAPSHOTS_HEADER)
    assert [line for line in lines if line.strip()][-1].startswith("Total TrueDiskSpaceUsed: ")
    ours = {
        (row.tag, row.keyspace, row.table)
        for row in parse_listsnapshots(result.stdout)
        if row.keyspace in (shop, stock)
    }
    assert ours == {
        ("both", shop, "orders"),
        ("both", shop, "returns"),
        ("both", stock, "orders"),
        ("both", stock, "returns"),
        ("shop-only", shop, "orders"),
        ("shop-only", shop, "returns"),
    }


def test_listsnapshots_rows_carry_sizes_with_units_and_utc_creation_times(
    cassandra_node: CassandraNode, keyspace: str, cql: Any
) -> None:
    create_table_with_rows(cql, keyspace, "orders", rows=100)
    snapshot(cassandra_node, "sized", keyspace)
    manifest = json.loads(
        (
            table_dir(cassandra_node, cql, keyspace, "orders") / "snapshots/sized/manifest.json"
        ).read_text()
    )

    rows = parse_listsnapshots(cassandra_node.nodetool("listsnapshots").stdout)

    [row] = [row for row in rows if row.keyspace == keyspace]
    assert row.size_on_disk.split()[1] in ("bytes", "KiB", "MiB", "GiB")
    assert float(row.size_on_disk.split()[0]) > 0
    assert row.created_at == manifest["created_at"]
    assert row.expires_at is None


def test_snapshot_with_a_ttl_shows_its_expiry_in_the_listing_and_the_manifest(
    cassandra_node: CassandraNode, keyspace: str, cql: Any
) -> None:
    create_table_with_rows(cql, keyspace, "orders", rows=5)

    result = cassandra_node.nodetool("snapshot", "-t", "short", "--ttl", "1h", "--", keyspace)

    assert result.returncode == 0
    manifest = json.loads(
        (
            table_dir(cassandra_node, cql, keyspace, "orders") / "snapshots/short/manifest.json"
        ).read_text()
    )
    created = datetime.fromisoformat(manifest["created_at"])
    expires = datetime.fromisoformat(manifest["expires_at"])
    assert (expires - created).total_seconds() == 3600
    rows = parse_listsnapshots(cassandra_node.nodetool("listsnapshots").stdout)
    assert [row.expires_at for row in rows if row.keyspace == keyspace] == [manifest["expires_at"]]


def test_snapshot_with_a_tag_already_in_the_keyspace_fails_with_exit_code_2(
    cassandra_node: CassandraNode, keyspace: str, cql: Any
) -> None:
    create_table_with_rows(cql, keyspace, "orders", rows=5)
    snapshot(cassandra_node, "again", keyspace)

    result = cassandra_node.nodetool("snapshot", "-t", "again", "--", keyspace)

    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: Snapshot again already exists."


def test_a_tag_already_in_one_keyspace_can_still_be_taken_in_another(
    cassandra_node: CassandraNode, make_keyspace: Callable[[], str], cql: Any
) -> None:
    first, second = make_keyspace(), make_keyspace()
    for keyspace in (first, second):
        create_table_with_rows(cql, keyspace, "orders", rows=5)
    snapshot(cassandra_node, "shared", first)

    lines = snapshot(cassandra_node, "shared", second)

    assert lines[-1] == "Snapshot directory: shared"


def test_a_tag_present_in_one_of_several_keyspaces_fails_and_snapshots_none(
    cassandra_node: CassandraNode, make_keyspace: Callable[[], str], cql: Any
) -> None:
    taken, fresh = make_keyspace(), make_keyspace()
    for keyspace in (taken, fresh):
        create_table_with_rows(cql, keyspace, "orders", rows=5)
    snapshot(cassandra_node, "partial", taken)

    result = cassandra_node.nodetool("snapshot", "-t", "partial", "--", fresh, taken)

    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "error: Snapshot partial already exists."
    assert not (table_dir(cassandra_node, cql, fresh, "orders") / "snapshots" / "partial").exists()


def test_snapshot_of_an_unknown_keyspace_fails_with_exit_code_1_on_stdout(
    cassandra_node: CassandraNode,
) -> None:
    result = cassandra_node.nodetool("snapshot", "-t", "nothing", "--", "no_such_keyspace")

    assert result.returncode == 1
    assert "nodetool: Keyspace no_such_keyspace does not exist" in result.stdout.splitlines()


def test_clearsnapshot_removes_the_tag_folder_and_its_rows(
    cassandra_node: CassandraNode, keyspace: str, cql: Any
) -> None:
    create_table_with_rows(cql, keyspace, "orders", rows=5)
    snapshot(cassandra_node, "doomed", keyspace)
    snapshot(cassandra_node, "kept", keyspace)

    result = cassandra_node.nodetool("clearsnapshot", "-t", "doomed")

    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "Requested clearing snapshot(s) for [all keyspaces] with snapshot name [doomed]"
    ]
    snapshots = table_dir(cassandra_node, cql, keyspace, "orders") / "snapshots"
    assert sorted(path.name for path in snapshots.iterdir()) == ["kept"]
    rows = parse_listsnapshots(cassandra_node.nodetool("listsnapshots").stdout)
    assert [row.tag for row in rows if row.keyspace == keyspace] == ["kept"]


def test_clearsnapshot_of_an_unknown_tag_succeeds_quietly(cassandra_node: CassandraNode) -> None:
    result = cassandra_node.nodetool("clearsnapshot", "-t", "never-taken")

    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "Requested clearing snapshot(s) for [all keyspaces] with snapshot name [never-taken]"
    ]


def test_clearsnapshot_without_a_tag_or_all_is_refused(cassandra_node: CassandraNode) -> None:
    result = cassandra_node.nodetool("clearsnapshot")

    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "nodetool: Specify snapshot name or --all"


def test_nodetool_fails_with_exit_code_1_when_nothing_listens_on_the_jmx_port(
    cassandra_node: CassandraNode,
) -> None:
    port = free_port("127.0.0.1")

    result = subprocess.run(
        [str(cassandra_node.nodetool_path), "-h", "127.0.0.1", "-p", str(port), "listsnapshots"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.startswith(f"nodetool: Failed to connect to '127.0.0.1:{port}'")


def test_a_stopped_node_starts_again_on_the_same_ports_with_its_rows(tmp_path: Path) -> None:
    with CassandraNode(tmp_path / "node", cluster_name="Restarted") as node:
        cql = node.cql_session()
        cql.execute(
            "CREATE KEYSPACE kept WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        create_table_with_rows(cql, "kept", "orders", rows=7)
        ports = (node.native_port, node.jmx_port)

        node.stop()
        stopped = node.nodetool("version")
        node.start()

        assert stopped.returncode == 1
        assert (node.native_port, node.jmx_port) == ports
        rows = node.cql_session().execute("SELECT id FROM kept.orders")
        assert sorted(row.id for row in rows) == list(range(7))
        assert node.nodetool("version").stdout.startswith("ReleaseVersion: 5.0.")
