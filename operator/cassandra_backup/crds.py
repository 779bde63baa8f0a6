"""CustomResourceDefinitions generated from the pydantic models.

Pydantic writes JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: no
``$ref``, no ``anyOf`` for optional fields, no ``const``, no
``additionalProperties: false`` next to ``properties`` (the API server prunes unknown
fields itself). ``structural`` does that translation, so the models stay the one
source of truth and ``crds/`` is their printout.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from cassandra_backup import models

CATEGORY = "cassandra-backups"


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of ``model``, every $ref resolved in place."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    schema: dict[str, Any] = _convert(raw, definitions)
    return schema


def _convert(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node

    if "$ref" in node:
        target = copy.deepcopy(definitions[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, definitions)

    options = node.get("anyOf")
    if options is not None:
        non_null = [option for option in options if option.get("type") != "null"]
        if len(non_null) == 1 and len(non_null) < len(options):
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            # Not `nullable`: the API server then drops an explicit null (OpsCenter's
            # `interval_unit: null`) as if the field were absent, which every rule
            # treats as "not set"; a nullable enum would refuse the null instead.
            converted: dict[str, Any] = _convert({**non_null[0], **rest}, definitions)
            return converted

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, definitions) for name, sub in value.items()}
            continue
        out[key] = _convert(value, definitions)

    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and "properties" not in out and \
            "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _status_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = structural(model)
    schema.pop("additionalProperties", None)
    schema["properties"]["kopf"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "Handler progress kept by the operator framework; not for users.",
    }
    return schema


def _root_schema(resource: type[BaseModel], spec: type[BaseModel],
                 status: type[BaseModel]) -> dict[str, Any]:
    schema = structural(resource)
    schema["properties"] = {
        "apiVersion": {"type": "string", "description": "The API version, "
                                                        f"{models.API_VERSION}."},
        "kind": {"type": "string", "description": "The kind of resource."},
        # The API server owns the metadata schema and refuses any description of it.
        "metadata": {"type": "object"},
        "spec": structural(spec),
        "status": _status_schema(status),
    }
    schema["properties"]["spec"]["description"] = resource.model_fields["spec"].description
    schema["properties"]["status"]["description"] = resource.model_fields["status"].description
    schema["required"] = ["spec"]
    schema.pop("additionalProperties", None)
    return schema


def _crd(*, kind: str, plural: str, short: str, schema: dict[str, Any],
         columns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{models.GROUP}"},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": [CATEGORY],
            },
            "versions": [{
                "name": models.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": schema},
            }],
        },
    }


def _column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def schedule_crd() -> dict[str, Any]:
    schema = _root_schema(models.BackupSchedule, models.BackupScheduleSpec,
                          models.BackupScheduleStatus)
    schema["description"] = "When to back up which keyspaces of a Cassandra cluster."
    return _crd(
        kind="BackupSchedule", plural="backupschedules", short="bsched", schema=schema,
        columns=[
            _column("Cluster", ".spec.cluster.name"),
            _column("Backend", ".status.backend"),
            _column("Every", ".status.every"),
            # Strings, not dates: kubectl prints <invalid> for a date in the future.
            _column("Next Run", ".status.nextRun"),
            _column("Last Run", ".status.lastRun"),
            _column("Suspended", ".spec.suspend", "boolean"),
            _column("Age", ".metadata.creationTimestamp", "date"),
        ],
    )


def run_crd() -> dict[str, Any]:
    schema = _root_schema(models.BackupRun, models.BackupRunSpec, models.BackupRunStatus)
    schema["description"] = "One backup: a snapshot with one tag on every Cassandra node."
    return _crd(
        kind="BackupRun", plural="backupruns", short="brun", schema=schema,
        columns=[
            _column("Cluster", ".spec.cluster.name"),
            _column("Phase", ".status.phase"),
            _column("Nodes", ".status.nodesSucceeded"),
            _column("Bytes", ".status.sizeBytes", "integer"),
            _column("Started", ".status.startTime"),
            _column("Age", ".metadata.creationTimestamp", "date"),
        ],
    )


def rendered() -> dict[str, str]:
    """File name to YAML text, as committed under ``crds/``."""
    header = "# Generated by `cassandra-backup-operator crds` from the models; do not edit.\n"
    return {
        f"{crd['metadata']['name']}.yaml": header + yaml.safe_dump(crd, sort_keys=False,
                                                                   width=100)
        for crd in (schedule_crd(), run_crd())
    }


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
