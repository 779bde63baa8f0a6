"""End to end: the operator, a sidecar running the real nodetool, and a real Cassandra."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.cassandra import CassandraNode
from support.fixtures import TOKEN
from support.processes import Process, Sidecar, free_port, real_sidecar, wait_for, wait_healthy
from support.resources import (
    create,
    event_messages,
    get,
    make_pod,
    rfc3339,
    run_manifest,
    schedule_manifest,
    sidecar_cluster,
    soon,
    terminal,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ROWS = 300


@pytest.fixture
def sidecar(cassandra_node: CassandraNode, tmp_path: Path) -> Iterator[Sidecar]:
    started = real_sidecar(workdir=tmp_path / "sidecar", host="127.0.0.1",
                           port=free_port(), token=TOKEN, nodetool=cassandra_node.nodetool_path,
                           jmx_host=cassandra_node.jmx_host, jmx_port=cassandra_node.jmx_port,
                           data_dir=cassandra_node.data_dir)
    with started.process:
        wait_healthy(started)
        yield started


@pytest.fixture
def filled(keyspace: str, cql: Any) -> str:
    """The test's keyspace with two tables of rows written through the CQL driver."""
    for table in ("readings", "devices"):
        cql.execute(f"CREATE TABLE {keyspace}.{table} (id int PRIMARY KEY, body text)")
        insert = cql.prepare(f"INSERT INTO {keyspace}.{table} (id, body) VALUES (?, ?)")
        for row in range(ROWS):
            cql.execute(insert, (row, f"{table}-{row}-" + "x" * 50))
    return keyspace


def snapshot_files(node: CassandraNode, keyspace: str, tag: str) -> list[Path]:
    return sorted(path for folder in node.data_dir.glob(f"{keyspace}/*/snapshots/{tag}")
                  for path in folder.iterdir() if path.is_file())


def test_a_backup_run_snapshots_real_sstables_and_reports_their_size(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, start_operator: Callable[..., Process], sidecar: Sidecar,
        cassandra_node: CassandraNode, filled: str) -> None:
    make_pod(core, namespace, name="cassandra-0", ip=sidecar.host)
    start_operator()
    cluster = sidecar_cluster(port=sidecar.port)
    create(custom, namespace, "backupruns",
           run_manifest("e2e-now", cluster=cluster, keyspaces={filled: {}}))

    done = wait_for(lambda: terminal(custom, namespace, "e2e-now"), timeout=120, what="run")
    assert done["phase"] == "Succeeded", done
    files = snapshot_files(cassandra_node, filled, "e2e-now")
    tables = {path.parent.parent.parent.name.split("-")[0] for path in files}
    assert tables == {"readings", "devices"}
    assert any(path.name.endswith("-Data.db") for path in files)
    on_disk = sum(path.stat().st_size for path in files)
    assert done["sizeBytes"] == on_disk
    assert done["keyspaces"] == {filled: {"nodes": [sidecar.host], "size": on_disk}}
    assert done["nodes"][0]["pod"] == "cassandra-0"
    assert list(cassandra_node.data_dir.glob("system/*/snapshots/e2e-now")) == [], \
        "only the requested keyspace"


def test_retention_clears_an_aged_snapshot_from_disk_and_removes_its_run(
        custom: client.CustomObjectsApi, core: client.CoreV1Api, namespace: str,
        token_secret: str, start_operator: Callable[..., Process], sidecar: Sidecar,
        cassandra_node: CassandraNode, filled: str) -> None:
    make_pod(core, namespace, name="cassandra-0", ip=sidecar.host)
    cluster = sidecar_cluster(port=sidecar.port)
    # A run two hours old, as the operator made it then, its snapshot still on disk.
    aged_at = datetime.now(UTC) - timedelta(hours=2)
    old = run_manifest("aged", cluster=cluster, keyspaces={filled: {}}, tag="aged",
                       deletionPolicy="Delete")
    old["metadata"]["labels"] = {"backups.cassandra.dev/schedule": "hourly"}
    old["metadata"]["annotations"] = {"backups.cassandra.dev/scheduled-at": rfc3339(aged_at)}
    create(custom, namespace, "backupruns", old)
    custom.patch_namespaced_custom_object_status(
        "backups.cassandra.dev", "v1alpha1", namespace, "backupruns", "aged",
        {"status": {"phase": "Succeeded", "tag": "aged", "startTime": rfc3339(aged_at),
                    "completionTime": rfc3339(aged_at),
                    "nodes": [{"node": sidecar.host, "phase": "Succeeded"}]}})
    assert cassandra_node.nodetool("snapshot", "-t", "aged", "--", filled).returncode == 0
    assert snapshot_files(cassandra_node, filled, "aged")

    tick = soon(4)
    create(custom, namespace, "backupschedules", schedule_manifest(
        "hourly", cluster=cluster, first=tick,
        jobParams={"keyspaces": [filled], "cleanupAge": 1, "cleanupAgeUnit": "hours"}))
    start_operator()

    fresh = f"hourly-{tick:%Y%m%d-%H%M}"
    assert wait_for(lambda: terminal(custom, namespace, fresh), timeout=120,
                    what="the scheduled run")["phase"] == "Succeeded"
    wait_for(lambda: get(custom, namespace, "backupruns", "aged") is None, timeout=90,
             what="retention to remove the aged run")
    assert snapshot_files(cassandra_node, filled, "aged") == []
    assert snapshot_files(cassandra_node, filled, fresh) != []
    assert event_messages(core, namespace, "hourly", "RetentionRemoved") == [
        "retention removed 1 runs older than 1 hours: aged"]
