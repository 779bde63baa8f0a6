"""Wire models of the sidecar: what a request may hold, how answers look, the OpenAPI doc."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cassandra_backup.models import KEYSPACE_PATTERN, TAG_PATTERN
from cassandra_backup.sidecar.api import (
    ErrorBody,
    SnapshotList,
    SnapshotRequest,
    SnapshotResult,
    openapi_document,
)


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("nightly-20120503-1800", id="run-name"),
        pytest.param("a", id="one-character"),
        pytest.param("A.b_c-1", id="every-allowed-punctuation"),
        pytest.param("x" * 128, id="128-characters"),
        pytest.param("...", id="three-dots"),
        pytest.param("a-", id="trailing-dash"),
    ],
)
def test_request_accepts_tag(tag: str) -> None:
    assert SnapshotRequest.model_validate_json(json.dumps({"tag": tag})).tag == tag


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("", id="empty"),
        pytest.param(".", id="dot"),
        pytest.param("..", id="dot-dot"),
        pytest.param("-rf", id="leading-dash"),
        pytest.param("--help", id="long-option"),
        pytest.param("../etc", id="parent-path"),
        pytest.param("a/b", id="slash"),
        pytest.param("a b", id="space"),
        pytest.param("a;rm", id="semicolon"),
        pytest.param("tag\n", id="newline"),
        pytest.param("x" * 129, id="129-characters"),
        pytest.param("k\u00e4se", id="non-ascii"),
    ],
)
def test_request_refuses_tag(tag: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SnapshotRequest.model_validate_json(json.dumps({"tag": tag}))

    assert [error["loc"] for error in caught.value.errors()] == [("tag",)]


@pytest.mark.parametrize(
    "keyspace",
    [
        pytest.param("--help", id="option"),
        pytest.param("-ks", id="leading-dash"),
        pytest.param("ks/..", id="slash"),
        pytest.param("..", id="dot-dot"),
        pytest.param("my-ks", id="dash"),
        pytest.param("", id="empty"),
        pytest.param("k" * 49, id="49-characters"),
    ],
)
def test_request_refuses_keyspace(keyspace: str) -> None:
    body = json.dumps({"tag": "t", "keyspaces": ["good", keyspace]})

    with pytest.raises(ValidationError) as caught:
        SnapshotRequest.model_validate_json(body)

    assert [error["loc"] for error in caught.value.errors()] == [("keyspaces", 1)]


def test_request_accepts_keyspace_names_cassandra_allows() -> None:
    body = json.dumps({"tag": "t", "keyspaces": ["system_auth", "K1", "k" * 48]})

    assert SnapshotRequest.model_validate_json(body).keyspaces == ["system_auth", "K1", "k" * 48]


def test_request_without_keyspaces_means_every_keyspace() -> None:
    assert SnapshotRequest.model_validate_json('{"tag": "t"}').keyspaces == []


def test_request_drops_repeated_keyspaces_keeping_their_order() -> None:
    body = '{"tag": "t", "keyspaces": ["b", "a", "b", "a"]}'

    assert SnapshotRequest.model_validate_json(body).keyspaces == ["b", "a"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"tag": 5}', id="number-tag"),
        pytest.param('{"tag": "t", "keyspaces": "ks"}', id="string-keyspaces"),
        pytest.param('{"tag": "t", "keyspaces": [1]}', id="number-keyspace"),
        pytest.param('{"keyspaces": []}', id="no-tag"),
        pytest.param('{"tag": "t", "keyspace": ["ks"]}', id="misspelt-field"),
        pytest.param('["t"]', id="array-body"),
        pytest.param('{"tag": "t"', id="truncated-json"),
    ],
)
def test_request_refuses_malformed_body(body: str) -> None:
    with pytest.raises(ValidationError):
        SnapshotRequest.model_validate_json(body)


def test_result_is_written_in_camel_case_with_utc_time() -> None:
    result = SnapshotResult(
        tag="nightly",
        keyspaces=["ks1"],
        size_bytes=4543,
        keyspace_sizes={"ks1": 4543},
        created_at=datetime(2012, 5, 3, 18, 0, tzinfo=UTC),
        created=True,
    )

    assert json.loads(result.model_dump_json()) == {
        "tag": "nightly",
        "keyspaces": ["ks1"],
        "sizeBytes": 4543,
        "keyspaceSizes": {"ks1": 4543},
        "createdAt": "2012-05-03T18:00:00Z",
        "created": True,
    }


def test_listing_reads_back_what_the_server_writes() -> None:
    body = (
        '{"snapshots": [{"tag": "t", "keyspaces": ["ks"], "sizeBytes": 10, '
        '"keyspaceSizes": {"ks": 10}, "createdAt": "2024-02-29T23:59:59.250Z"}]}'
    )

    listing = SnapshotList.model_validate_json(body)

    assert listing.snapshots[0].size_bytes == 10
    assert listing.snapshots[0].created_at == datetime(2024, 2, 29, 23, 59, 59, 250000, tzinfo=UTC)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_openapi_document_is_version_3_1_with_every_endpoint() -> None:
    document = openapi_document()

    assert document["openapi"] == "3.1.0"
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v1/snapshots", "post"),
        ("/v1/snapshots", "get"),
        ("/v1/snapshots/{tag}", "delete"),
    }


def test_openapi_schemas_are_the_models_own() -> None:
    schemas = openapi_document()["components"]["schemas"]
    template = "#/components/schemas/{model}"

    assert schemas["SnapshotRequest"] == SnapshotRequest.model_json_schema(ref_template=template)
    assert schemas["ErrorBody"] == ErrorBody.model_json_schema(
        ref_template=template, mode="serialization"
    )
    assert schemas["SnapshotRequest"]["properties"]["tag"]["pattern"] == TAG_PATTERN
    assert schemas["SnapshotRequest"]["properties"]["keyspaces"]["items"]["pattern"] == (
        KEYSPACE_PATTERN
    )
    assert set(schemas["SnapshotResult"]["required"]) == {
        "tag",
        "keyspaces",
        "sizeBytes",
        "keyspaceSizes",
        "createdAt",
        "created",
    }


def test_openapi_references_all_resolve() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]

    refs = _refs(document["paths"]) + _refs(schemas)

    assert refs
    assert {ref.removeprefix("#/components/schemas/") for ref in refs} <= set(schemas)


def test_openapi_requires_bearer_auth_except_on_probes() -> None:
    document = openapi_document()

    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert document["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert document["paths"]["/readyz"]["get"]["security"] == []
    assert "security" not in document["paths"]["/v1/snapshots"]["post"]


def test_openapi_delete_documents_the_tag_rule() -> None:
    delete = openapi_document()["paths"]["/v1/snapshots/{tag}"]["delete"]

    assert delete["parameters"][0]["schema"]["pattern"] == TAG_PATTERN
    assert set(delete["responses"]) == {"204", "400", "401", "404", "500", "503", "504"}
