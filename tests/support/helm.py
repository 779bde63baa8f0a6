"""Run the helm that `hack/build-tools.sh helm` builds into the project's cache.

Like the control-plane binaries, helm is never taken from PATH: a machine's own helm may
be any version, and the chart tests must render the same everywhere. The cached binary
counts only once the build script has stamped it; otherwise it is built (once) first.

Every call gets its own helm home (cache, config and data folders) beside the kubeconfig
or in a given folder, so tests neither read nor leave behind a user's repositories and
plugins.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .controlplane import BUILD_SCRIPT, REPO_ROOT, cache_bin_dir

CHART_DIR = REPO_ROOT / "helm" / "cassandra-backup-operator"
DEFAULT_TIMEOUT_SECONDS = 180.0
BUILD_TIMEOUT_SECONDS = 1800.0


class HelmError(subprocess.CalledProcessError):
    """A helm call that exited non-zero; its message carries helm's own words."""

    def __str__(self) -> str:
        command = " ".join(str(part) for part in self.cmd)
        return f"`{command}` exited with {self.returncode}: {(self.stderr or '').strip()}"


def helm_binary() -> Path:
    """The cached helm, built by the project's build script when it is not there yet."""
    binary = cache_bin_dir() / "helm"
    if not _is_stamped(binary):
        built = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "helm"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
        if built.returncode != 0 or not _is_stamped(binary):
            raise FileNotFoundError(
                f"helm is not in {cache_bin_dir()} and `{BUILD_SCRIPT} helm` did not build it: "
                f"{built.stderr.strip()[-2000:]}"
            )
    return binary


def _is_stamped(binary: Path) -> bool:
    # The build script stamps the binary only once it is completely written.
    stamped = any(binary.parent.glob(".helm-*"))
    return stamped and binary.is_file() and os.access(binary, os.X_OK)


def helm(
    *args: str,
    home: Path,
    kubeconfig: Path | None = None,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    """Run helm with `args`, its state under `home`, against the cluster `kubeconfig`
    names (when one is given)."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    env.pop("KUBECONFIG", None)
    command = [str(helm_binary()), *args]
    if kubeconfig is not None:
        command.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise HelmError(result.returncode, command, result.stdout, result.stderr)
    return result
