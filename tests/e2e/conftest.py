"""Fixtures of the end-to-end tier: one real Cassandra node for the whole test session.

A node costs seconds to start and a gigabyte of heap, so every end-to-end test shares the
same one and keeps out of the others' way by working in a keyspace of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.cassandra import CassandraNode
from support.fixtures import core, custom, start_operator, token_secret  # noqa: F401


@pytest.fixture(scope="session")
def cassandra_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraNode]:
    """A started single-node Cassandra on 127.0.0.1, stopped when the session ends."""
    with CassandraNode(tmp_path_factory.mktemp("cassandra"), cluster_name="E2E_Cluster") as node:
        yield node


@pytest.fixture(scope="session")
def cql(cassandra_node: CassandraNode) -> Any:
    """A driver session on the node, with no keyspace: statements name their keyspace."""
    return cassandra_node.cql_session()


@pytest.fixture
def make_keyspace(cassandra_node: CassandraNode, cql: Any) -> Iterator[Callable[[], str]]:
    """Creates fresh keyspaces (replication factor 1); they and their snapshots go afterwards."""
    created: list[str] = []

    def make() -> str:
        name = f"ks_{uuid.uuid4().hex[:12]}"
        cql.execute(
            f"CREATE KEYSPACE {name} "
            "WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        created.append(name)
        return name

    yield make
    for name in created:
        cassandra_node.nodetool("clearsnapshot", "--all", "--", name)
        cql.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.fixture
def keyspace(make_keyspace: Callable[[], str]) -> str:
    """One fresh keyspace for the test."""
    return make_keyspace()
