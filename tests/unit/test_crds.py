"""The CRDs under crds/ are the models' printout, and structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cassandra_backup import crds

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    generated = crds.rendered()
    committed = {path.name: path.read_text() for path in CRD_DIR.glob("*.yaml")}
    assert committed == generated, (
        "crds/ is out of date: run `make crds` (cassandra-backup-operator crds -o crds)")


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += walk(schema["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("crd", [crds.schedule_crd(), crds.run_crd()],
                         ids=["BackupSchedule", "BackupRun"])
def test_schema_is_structural_and_every_field_is_described(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    for word in ("$ref", "anyOf", "const", "title"):
        assert word not in text
    for path, node in walk(schema):
        assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), path
        parent_is_list_or_map = path.endswith(("[]", "{}"))
        if path and path != ".metadata" and not parent_is_list_or_map:
            assert node.get("description"), f"{path} has no description"


def test_names_short_names_and_category() -> None:
    names = crds.schedule_crd()["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        "BackupSchedule", ["bsched"], ["cassandra-backups"])
    names = crds.run_crd()["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        "BackupRun", ["brun"], ["cassandra-backups"])


def test_next_run_is_a_string_column_never_a_date() -> None:
    columns = crds.schedule_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    by_name = {column["name"]: column for column in columns}
    assert list(by_name) == ["Cluster", "Backend", "Every", "Next Run", "Last Run",
                             "Suspended", "Age"]
    assert by_name["Next Run"]["type"] == "string"
    assert by_name["Last Run"]["type"] == "string"
