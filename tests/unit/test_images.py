"""What can be known of the two images without building them: the user they run as,
their entrypoints, their bases, and that the manifests that run them agree.

No Docker here, so the Dockerfiles are read as text: continuation lines joined, comments
dropped, each instruction with its stage.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES = REPO_ROOT / "images"
SCRIPTS: dict[str, str] = tomllib.loads(
    (REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    value: str


def instructions(dockerfile: Path) -> list[Instruction]:
    logical: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{dockerfile.name} ends inside a continued line"

    found: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(stage=stage, keyword=keyword, value=value.strip()))
    return found


def final_stage(dockerfile: Path) -> list[Instruction]:
    every = instructions(dockerfile)
    last = max(instruction.stage for instruction in every)
    return [instruction for instruction in every if instruction.stage == last]


def last_value(stage: list[Instruction], keyword: str) -> str:
    values = [instruction.value for instruction in stage if instruction.keyword == keyword]
    assert values, f"no {keyword} in the final stage"
    return values[-1]


def exec_form(value: str) -> list[str]:
    """ENTRYPOINT and CMD in exec form (a JSON array): no shell between signal and process."""
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed)
    return parsed


def user_id(stage: list[Instruction]) -> int:
    user = last_value(stage, "USER").split(":")[0]
    assert user.isdigit(), f"USER {user} is not numeric: the kubelet cannot check runAsNonRoot"
    return int(user)


def apt_installs(stage: list[Instruction]) -> set[str]:
    packages: set[str] = set()
    for instruction in stage:
        if instruction.keyword != "RUN":
            continue
        for command in re.split(r"&&|;", instruction.value):
            words = command.split()
            if words[:2] == ["apt-get", "install"]:
                packages.update(word for word in words[2:] if not word.startswith("-"))
    return packages


def copied_sources(dockerfile: Path) -> list[str]:
    sources: list[str] = []
    for instruction in instructions(dockerfile):
        if instruction.keyword == "COPY" and not instruction.value.startswith("--from"):
            sources.extend(instruction.value.split()[:-1])
    return sources


OPERATOR = IMAGES / "Dockerfile.operator"
SIDECAR = IMAGES / "Dockerfile.sidecar"


@pytest.mark.parametrize("dockerfile", [OPERATOR, SIDECAR], ids=["operator", "sidecar"])
def test_image_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    assert user_id(final_stage(dockerfile)) > 0


@pytest.mark.parametrize("dockerfile", [OPERATOR, SIDECAR], ids=["operator", "sidecar"])
def test_image_installs_the_system_time_zone_database(dockerfile: Path) -> None:
    assert "tzdata" in apt_installs(final_stage(dockerfile))


@pytest.mark.parametrize(("dockerfile", "script"), [
    (OPERATOR, "cassandra-backup-operator"),
    (SIDECAR, "cassandra-backup-sidecar"),
], ids=["operator", "sidecar"])
def test_entrypoint_is_the_packages_console_script(dockerfile: Path, script: str) -> None:
    assert script in SCRIPTS
    assert exec_form(last_value(final_stage(dockerfile), "ENTRYPOINT")) == [script]


@pytest.mark.parametrize("dockerfile", [OPERATOR, SIDECAR], ids=["operator", "sidecar"])
def test_build_context_holds_everything_the_image_copies(dockerfile: Path) -> None:
    ignore = dockerfile.with_name(f"{dockerfile.name}.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = copied_sources(dockerfile)

    assert sources, "the image copies the package in"
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"{source} is missing from the repository"
        assert source.rstrip("/") in kept, f"{source} is left out of the build context"


def test_sidecar_image_is_the_official_cassandra_5_0_image() -> None:
    bases = [i.value for i in instructions(SIDECAR) if i.keyword == "FROM"]

    assert bases == ["cassandra:5.0"], "nodetool must come from Cassandra 5.0 itself"


def test_sidecar_image_installs_the_package_into_its_own_environment() -> None:
    runs = " ".join(i.value for i in final_stage(SIDECAR) if i.keyword == "RUN")

    assert "python3 -m venv /opt/cassandra-backup" in runs
    assert "/opt/cassandra-backup/bin/pip install" in runs
    assert "/opt/cassandra-backup/bin:" in last_value(final_stage(SIDECAR), "ENV")


def test_operator_image_is_python_slim_and_its_default_command_is_what_deploy_runs() -> None:
    every = instructions(OPERATOR)
    base_argument = next(i.value for i in every if i.keyword == "ARG" and i.stage == -1)
    deployment = yaml.safe_load((REPO_ROOT / "deploy" / "operator" / "deployment.yaml")
                                .read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[1-9]-slim(-\w+)?", base_argument)
    assert [i.value for i in every if i.keyword == "FROM"][-1] == "${PYTHON_IMAGE}"
    assert exec_form(last_value(final_stage(OPERATOR), "CMD")) == container["args"]


def _containers(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        spec = document.get("spec") or {}
        pod = (spec.get("template") or spec.get("podTemplateSpec") or {}).get("spec") or {}
        found.extend(pod.get("containers") or [])
    return found


@pytest.mark.parametrize(("manifest", "container", "dockerfile"), [
    (REPO_ROOT / "deploy" / "operator" / "deployment.yaml", "operator", OPERATOR),
    (REPO_ROOT / "examples" / "sidecar" / "statefulset.yaml", "backup-sidecar", SIDECAR),
    (REPO_ROOT / "examples" / "sidecar" / "cassandradatacenter.yaml", "backup-sidecar",
     SIDECAR),
], ids=["operator-deployment", "sidecar-statefulset", "sidecar-cass-operator"])
def test_manifests_run_the_image_as_its_own_user(manifest: Path, container: str,
                                                 dockerfile: Path) -> None:
    (found,) = [c for c in _containers(manifest) if c["name"] == container]
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    pod_context: dict[str, Any] = next(
        ((d["spec"].get("template") or {}).get("spec", {}).get("securityContext", {})
         for d in documents if d["kind"] in {"Deployment", "StatefulSet"}), {})
    context = {**pod_context, **(found.get("securityContext") or {})}

    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == user_id(final_stage(dockerfile))
