"""A real Apache Cassandra node on a loopback address, for the end-to-end tests and the demo.

What the sidecar must cope with (what `nodetool snapshot` prints, how a snapshot folder is
laid out, which exit codes mean what) is only known from a real node, so the end-to-end
tier runs one: the server jars come from Maven Central through `hack/cassandra.sh`, and
`CassandraDaemon` is started here directly, without the release tarball's shell scripts,
which are not published to Maven.

Everything the node writes (configuration, data, commit log, logs) lives under the
workdir it is given. Ports are picked free on the node's address, so several nodes, or a
node beside a developer's own Cassandra, can run at once. JMX listens on 127.0.0.1 only,
without authentication, which is Cassandra's own "local JMX" mode.

The node runs in its own process group and is stopped through it, so a JVM is never left
behind by a failing test. `CassandraNode` is a context manager and needs nothing from
pytest, so plain scripts use it the same way. The CQL driver is imported only where a
session is made, so fetching Cassandra and running nodetool work without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = REPO_ROOT / "hack" / "cassandra.sh"
TEMPLATES = REPO_ROOT / "hack" / "cassandra"
JMX_HOST = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT_SECONDS = 300.0
DEFAULT_STOP_TIMEOUT_SECONDS = 60.0
NODETOOL_TIMEOUT_SECONDS = 120.0
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

# Settings that turn a production start into a quick one for a single node with nothing
# to join: no gossip settling and no delay before the default superuser is created.
FAST_START_PROPERTIES = (
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.superuser_setup_delay_ms=0",
)

# The collector settings Cassandra ships for Java 17, shrunk to a small heap.
GC_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
)


class CassandraStartError(RuntimeError):
    """The node exited or did not accept CQL sessions in time; the message ends with its log."""


def fetch_cassandra() -> Path:
    """The Cassandra home in the cache (lib/, bin/nodetool), fetched first if it is missing.

    The fetch script prints its progress on stderr, which is passed through so that a first,
    slow run shows what it is doing.
    """
    result = subprocess.run(
        ["bash", str(FETCH_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


def jvm17_flags() -> list[str]:
    """The module-system flags Cassandra needs on Java 17, from `hack/cassandra/jvm17.options`."""
    lines = (TEMPLATES / "jvm17.options").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def free_port(address: str) -> int:
    """A TCP port that nothing listens on at `address` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


class CassandraNode:
    """One Cassandra node under `workdir`, started by `start()` or by entering the context."""

    def __init__(
        self,
        workdir: Path,
        *,
        cluster_name: str = "Test_Cluster",
        address: str = "127.0.0.1",
        heap: str = "1G",
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self.workdir = workdir.resolve()
        self.cluster_name = cluster_name
        self.address = address
        self.heap = heap
        self.startup_timeout = startup_timeout

        self.native_port = free_port(address)
        self.storage_port = free_port(address)
        self.jmx_port = free_port(JMX_HOST)

        self.data_dir = self.workdir / "data"
        self.log_dir = self.workdir / "logs"
        self.config_dir = self.workdir / "conf"
        self.triggers_dir = self.workdir / "triggers"
        self.home: Path | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._cluster: Any = None

    @property
    def nodetool_path(self) -> Path:
        """The generated `bin/nodetool` of the fetched Cassandra."""
        return self._require_home() / "bin" / "nodetool"

    @property
    def nodetool_args_prefix(self) -> list[str]:
        """The arguments that point nodetool at this node's JMX port."""
        return ["-h", JMX_HOST, "-p", str(self.jmx_port)]

    @property
    def jmx_host(self) -> str:
        return JMX_HOST

    @property
    def system_log(self) -> Path:
        return self.log_dir / "system.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Write the configuration, start the JVM and wait until CQL accepts a session.

        A stopped node starts again on the same ports with the data it had.
        """
        if self.running:
            raise RuntimeError(f"the node in {self.workdir} is already running")
        self.home = fetch_cassandra()
        self._write_config()

        started = time.monotonic()
        output = (self.log_dir / "output.log").open("ab")
        try:
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            output.close()

        try:
            self._wait_until_cql_accepts_sessions(deadline=started + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_SECONDS) -> None:
        """Shut the driver sessions down, then the node's whole process group."""
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None

        process = self._process
        if process is None or process.poll() is not None:
            return
        self._signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(process, signal.SIGKILL)
            process.wait(timeout=timeout)

    def cql_session(self, keyspace: str | None = None) -> Any:
        """A new `cassandra.cluster.Session` on this node, closed when the node stops.

        Sessions share one driver cluster object, so asking for several costs little.
        """
        if self._cluster is None:
            self._cluster = self._new_cluster()
        return self._cluster.connect(keyspace)

    def nodetool(
        self, *args: str, timeout: float = NODETOOL_TIMEOUT_SECONDS
    ) -> subprocess.CompletedProcess[str]:
        """Run the real nodetool against this node; the exit code is left to the caller."""
        return subprocess.run(
            [str(self.nodetool_path), *self.nodetool_args_prefix, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the node's log, or of its console output before logging began."""
        for candidate in (self.system_log, self.log_dir / "output.log"):
            if candidate.is_file() and candidate.stat().st_size > 0:
                text = candidate.read_text(errors="replace").splitlines()
                return "\n".join(text[-lines:])
        return "(the node wrote no log)"

    def _require_home(self) -> Path:
        if self.home is None:
            self.home = fetch_cassandra()
        return self.home

    def _write_config(self) -> None:
        for folder in (self.data_dir, self.log_dir, self.config_dir, self.triggers_dir):
            folder.mkdir(parents=True, exist_ok=True)

        template = string.Template((TEMPLATES / "cassandra.yaml.template").read_text())
        config = template.substitute(
            cluster_name=self.cluster_name,
            address=self.address,
            storage_port=self.storage_port,
            native_port=self.native_port,
            data_dir=self.data_dir,
            workdir=self.workdir,
        )
        (self.config_dir / "cassandra.yaml").write_text(config)
        (self.config_dir / "logback.xml").write_text((TEMPLATES / "logback.xml").read_text())

    def _command(self) -> list[str]:
        lib = self._require_home() / "lib"
        jamm = sorted(lib.glob("jamm-*.jar"))
        # Cassandra measures object sizes through the jamm agent, as its own scripts start it.
        agent = [f"-javaagent:{jamm[-1]}"] if jamm else []
        return [
            "java",
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-Xss256k",
            "-XX:+PerfDisableSharedMem",
            "-XX:+ExitOnOutOfMemoryError",
            *GC_FLAGS,
            *agent,
            *jvm17_flags(),
            "-Djava.net.preferIPv4Stack=true",
            f"-Dcassandra.config={(self.config_dir / 'cassandra.yaml').as_uri()}",
            f"-Dcassandra.storagedir={self.workdir}",
            f"-Dcassandra.logdir={self.log_dir}",
            f"-Dcassandra.triggers_dir={self.triggers_dir}",
            f"-Dlogback.configurationFile={self.config_dir / 'logback.xml'}",
            f"-Dcassandra.jmx.local.port={self.jmx_port}",
            "-Dcassandra-foreground=yes",
            *FAST_START_PROPERTIES,
            "-cp",
            f"{lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def _new_cluster(self) -> Any:
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import WhiteListRoundRobinPolicy

        # Only this node: the driver would otherwise try every peer it learns about.
        profile = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy([self.address]),
            request_timeout=30.0,
        )
        return Cluster(
            [self.address],
            port=self.native_port,
            protocol_version=5,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=10.0,
            control_connection_timeout=10.0,
        )

    def _wait_until_cql_accepts_sessions(self, *, deadline: float) -> None:
        while True:
            self._raise_if_exited()
            if time.monotonic() > deadline:
                raise CassandraStartError(
                    f"Cassandra in {self.workdir} did not accept CQL on "
                    f"{self.address}:{self.native_port} within {self.startup_timeout:.0f} s; "
                    f"its log ends with:\n{self.log_tail()}"
                )
            if _port_accepts(self.address, self.native_port) and self._cql_answers():
                return
            time.sleep(0.5)

    def _cql_answers(self) -> bool:
        from cassandra.cluster import NoHostAvailable

        cluster = self._new_cluster()
        try:
            cluster.connect().execute("SELECT release_version FROM system.local")
        except NoHostAvailable:
            return False
        finally:
            cluster.shutdown()
        return True

    def _raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise CassandraStartError(
                f"Cassandra in {self.workdir} exited with {self._process.returncode} while "
                f"starting; its log ends with:\n{self.log_tail()}"
            )

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to end it when the starting process dies.

    The node has a process group of its own, so a killed test run would otherwise leave it
    running. The signal follows the thread that started the node, so start it from a
    thread that lives as long as the node should.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _port_accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False
