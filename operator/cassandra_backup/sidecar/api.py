"""Wire models of the sidecar HTTP API, shared by the server and the client.

The models are the single description of the API: the server validates requests with
them, the client parses answers with them, and the published OpenAPI document is
generated from them, so the three cannot drift apart.

Tag and keyspace rules are stricter than Cassandra's own because both values end up as
`nodetool` arguments and as folder names under the data directories: a tag such as
`../etc` or `-rf` must never reach either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from cassandra_backup import __version__
from cassandra_backup.models import KEYSPACE_PATTERN, TAG_PATTERN

SNAPSHOTS_PATH: Final = "/v1/snapshots"
OPENAPI_PATH: Final = "/openapi.json"
HEALTHZ_PATH: Final = "/healthz"
READYZ_PATH: Final = "/readyz"


def _check_tag(tag: str) -> str:
    if tag in {".", ".."}:
        raise ValueError("a snapshot tag may not be '.' or '..'")
    if tag.startswith("-"):
        raise ValueError("a snapshot tag may not start with '-' (nodetool would read an option)")
    return tag


def _drop_repeated(keyspaces: list[str]) -> list[str]:
    return list(dict.fromkeys(keyspaces))


SnapshotTag = Annotated[
    str,
    Field(
        pattern=TAG_PATTERN,
        description=(
            "Snapshot tag: letters, digits, '.', '_' and '-', at most 128 characters; "
            "not '.' or '..' and not starting with '-'."
        ),
        examples=["nightly-20120503-1800"],
    ),
    AfterValidator(_check_tag),
]

KeyspaceName = Annotated[
    str,
    Field(
        pattern=KEYSPACE_PATTERN,
        description="Keyspace name: letters, digits and '_', at most 48 characters.",
        examples=["test"],
    ),
]

snapshot_tag_adapter: Final = TypeAdapter(SnapshotTag)


class SnapshotRequest(BaseModel):
    """Body of `POST /v1/snapshots`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    tag: SnapshotTag
    keyspaces: Annotated[
        list[KeyspaceName],
        AfterValidator(_drop_repeated),
        Field(
            description="Keyspaces to snapshot; empty means every keyspace on the node.",
        ),
    ] = []


class _WireModel(BaseModel):
    """Answers use camelCase keys, like the custom resources the operator writes."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        field_title_generator=lambda name, _info: to_camel(name),
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


class SnapshotInfo(_WireModel):
    """One snapshot tag on this node, measured from the data directories."""

    tag: str
    keyspaces: list[str] = Field(description="Keyspaces holding at least one table of the tag.")
    size_bytes: int = Field(
        ge=0,
        description=(
            "Bytes of every file under the tag's snapshot folders. Snapshot files are hard "
            "links to SSTables, so this is the size on disk, not extra space used."
        ),
    )
    keyspace_sizes: dict[str, int] = Field(description="The same bytes, per keyspace.")
    created_at: datetime = Field(
        description="From the snapshot manifest's created_at, else the folder's mtime (UTC)."
    )


class SnapshotResult(SnapshotInfo):
    """Answer to `POST /v1/snapshots`."""

    created: bool = Field(
        description="True if this request made the snapshot; false if the tag already existed."
    )


class SnapshotList(_WireModel):
    """Answer to `GET /v1/snapshots`."""

    snapshots: list[SnapshotInfo]


class ErrorBody(_WireModel):
    """Every error answer, whatever its status."""

    error: str


class ProbeStatus(_WireModel):
    """Answer of a probe that passed."""

    status: str


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_answer(description: str, ref: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json_content(ref)}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document the server publishes at `/openapi.json`."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (SnapshotRequest, "validation"),
        (SnapshotResult, "serialization"),
        (SnapshotList, "serialization"),
        (ErrorBody, "serialization"),
        (ProbeStatus, "serialization"),
    ]
    refs, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    request_ref = refs[(SnapshotRequest, "validation")]
    result_ref = refs[(SnapshotResult, "serialization")]
    list_ref = refs[(SnapshotList, "serialization")]
    error_ref = refs[(ErrorBody, "serialization")]
    probe_ref = refs[(ProbeStatus, "serialization")]
    tag_schema = snapshot_tag_adapter.json_schema()

    unauthorized = _error_answer("Missing or wrong bearer token.", error_ref)
    unavailable = _error_answer("nodetool cannot reach Cassandra over JMX.", error_ref)
    failed = _error_answer("nodetool failed; the error holds its output.", error_ref)
    timed_out = _error_answer("nodetool did not finish in time and was stopped.", error_ref)

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cassandra-backup-sidecar",
            "version": __version__,
            "description": "Takes, lists and clears Cassandra snapshots on one node.",
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            HEALTHZ_PATH: {
                "get": {
                    "summary": "The agent is up.",
                    "security": [],
                    "responses": {
                        "200": {"description": "Up.", "content": _json_content(probe_ref)},
                    },
                },
            },
            READYZ_PATH: {
                "get": {
                    "summary": "nodetool reaches Cassandra.",
                    "security": [],
                    "responses": {
                        "200": {"description": "Ready.", "content": _json_content(probe_ref)},
                        "503": _error_answer("Not ready; the error says why.", error_ref),
                    },
                },
            },
            SNAPSHOTS_PATH: {
                "post": {
                    "summary": "Take a snapshot; a repeated identical request changes nothing.",
                    "requestBody": {"required": True, "content": _json_content(request_ref)},
                    "responses": {
                        "201": {
                            "description": "Snapshot taken.",
                            "content": _json_content(result_ref),
                        },
                        "200": {
                            "description": "The tag already exists with the same keyspaces.",
                            "content": _json_content(result_ref),
                        },
                        "400": _error_answer("Bad tag, keyspace or body.", error_ref),
                        "401": unauthorized,
                        "409": _error_answer(
                            "The tag already exists with other keyspaces.", error_ref
                        ),
                        "500": failed,
                        "503": unavailable,
                        "504": timed_out,
                    },
                },
                "get": {
                    "summary": "Snapshot tags on this node.",
                    "responses": {
                        "200": {"description": "The tags.", "content": _json_content(list_ref)},
                        "401": unauthorized,
                    },
                },
            },
            f"{SNAPSHOTS_PATH}/{{tag}}": {
                "delete": {
                    "summary": "Clear a snapshot tag on every keyspace.",
                    "parameters": [
                        {"name": "tag", "in": "path", "required": True, "schema": tag_schema},
                    ],
                    "responses": {
                        "204": {"description": "Cleared."},
                        "400": _error_answer("Bad tag.", error_ref),
                        "401": unauthorized,
                        "404": _error_answer("No snapshot with this tag.", error_ref),
                        "500": failed,
                        "503": unavailable,
                        "504": timed_out,
                    },
                },
            },
        },
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
