"""The operator and the sidecars as real processes, for integration tests and the demo.

Both are started through their console scripts from the project's own venv, so the
tests exercise exactly what a user runs. Each process gets its own process group and
log file; ``kill()`` is a SIGKILL, for crash tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

from support import fake_nodetool

BIN = Path(sys.executable).parent
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], *, timeout: float, interval: float = 0.2,
             what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """A child process in its own group, with its output in ``log``."""

    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _signal(self, signum: signal.Signals) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last status write; what a crash looks like."""
        self._signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        self._signal(signal.SIGTERM)
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> Self:
        return self.start() if self.popen is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()


def operator_process(*, kubeconfig: Path, log: Path, namespaces: list[str] | None = None,
                     metrics_port: int = 0, extra: list[str] | None = None) -> Process:
    argv = [str(BIN / "cassandra-backup-operator"), "run", "--metrics-host", "127.0.0.1",
            "--metrics-port", str(metrics_port),
            "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]
    for namespace in namespaces or []:
        argv += ["--namespace", namespace]
    return Process(argv=argv + (extra or []), log=log, env={"KUBECONFIG": str(kubeconfig)})


@dataclass
class Sidecar:
    """A sidecar process on a loopback address, over a fake or a real nodetool."""

    host: str
    port: int
    process: Process
    data_dir: Path
    nodetool_log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def nodetool_calls(self, command: str) -> int:
        """How many times the fake nodetool ran ``command`` (e.g. ``snapshot``)."""
        if not self.nodetool_log.exists():
            return 0
        return sum(1 for line in self.nodetool_log.read_text().splitlines()
                   if f'"{command}"' in line)

    def snapshot_dirs(self, tag: str) -> list[Path]:
        return sorted(self.data_dir.glob(f"*/*/snapshots/{tag}"))

    def take_snapshot(self, tag: str) -> None:
        """Snapshot every keyspace behind the sidecar's back, as an earlier run would have."""
        env = {**os.environ, "FAKE_NODETOOL_DATA_DIR": str(self.data_dir)}
        subprocess.run([sys.executable, fake_nodetool.__file__, "snapshot", "-t", tag],
                       env=env, check=True, capture_output=True)


def fake_sidecar(*, workdir: Path, host: str, port: int, token: str,
                 keyspaces: dict[str, list[str]] | None = None, delay: float = 0.0,
                 down: bool = False, nodetool_env: dict[str, str] | None = None) -> Sidecar:
    """A real sidecar process whose nodetool is the fake, over a seeded data dir."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    fake_nodetool.seed_data_dir(data_dir, keyspaces or {"test": ["items", "users"]})
    nodetool = fake_nodetool.install_launcher(workdir)
    token_file = workdir / "token"
    token_file.write_text(token)
    nodetool_log = workdir / "nodetool.log"
    env = {"FAKE_NODETOOL_DATA_DIR": str(data_dir), "FAKE_NODETOOL_LOG": str(nodetool_log),
           "FAKE_NODETOOL_DELAY": str(delay), **(nodetool_env or {})}
    if down:
        env["FAKE_NODETOOL_DOWN"] = "1"
    argv = [str(BIN / "cassandra-backup-sidecar"), "--host", host, "--port", str(port),
            "--token-file", str(token_file), "--nodetool", str(nodetool),
            "--data-dir", str(data_dir)]
    process = Process(argv=argv, log=workdir / "sidecar.log", env=env)
    return Sidecar(host=host, port=port, process=process, data_dir=data_dir,
                   nodetool_log=nodetool_log)


def real_sidecar(*, workdir: Path, host: str, port: int, token: str, nodetool: Path,
                 jmx_host: str, jmx_port: int, data_dir: Path) -> Sidecar:
    """A sidecar process that runs the real nodetool against a real Cassandra node."""
    workdir.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "token"
    token_file.write_text(token)
    argv = [str(BIN / "cassandra-backup-sidecar"), "--host", host, "--port", str(port),
            "--token-file", str(token_file), "--nodetool", str(nodetool),
            "--jmx-host", jmx_host, "--jmx-port", str(jmx_port), "--data-dir", str(data_dir)]
    process = Process(argv=argv, log=workdir / "sidecar.log")
    return Sidecar(host=host, port=port, process=process, data_dir=data_dir,
                   nodetool_log=workdir / "no-fake-nodetool.log")


def wait_healthy(sidecar: Sidecar, timeout: float = 30.0) -> None:
    import httpx

    def healthy() -> bool:
        if not sidecar.process.running:
            raise AssertionError(f"sidecar exited:\n{sidecar.process.output()}")
        try:
            return httpx.get(f"{sidecar.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=timeout, what=f"sidecar {sidecar.url}")
