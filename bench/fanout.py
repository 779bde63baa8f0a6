#!/usr/bin/env python3
"""How long one BackupRun over 50 sidecars takes, how often it writes status, and what
the operator's memory peaks at.

DESIGN.md promises that a run over N nodes lasts about as long as its slowest node and
that results reach status in batches, at most one write per half second. Both are
claims about the whole system (kopf picking the run up, the fan-out, the sidecars'
nodetool processes, the API server), so this measures the real thing: a local control
plane, 50 real `cassandra-backup-sidecar` processes on distinct loopback addresses whose
nodetool is the fake one sleeping FAKE_NODETOOL_DELAY seconds, and the real operator
process. It reports figures and compares them with their targets (under 3 s, at most 10
status writes, under 150 MB, set for the default 50 sidecars and 1 s); it asserts nothing.

The time of a run is taken from the create call to the moment a watch on that BackupRun
delivers a terminal phase, so it includes kopf noticing the run and the last status
write. Status writes are the MODIFIED events whose `.status` differs from the one
before. Peak memory is VmHWM of the operator process after each run; it only grows, so
the last run's figure is the peak over all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import httpx
from kubernetes import client, config, watch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from support.controlplane import ControlPlane  # noqa: E402
from support.kubectl import kubectl  # noqa: E402
from support.processes import Process, Sidecar, fake_sidecar, operator_process  # noqa: E402
from support.resources import GROUP, VERSION, run_manifest, sidecar_cluster  # noqa: E402

BENCHMARKS = REPO_ROOT / "BENCHMARKS.md"
SECTION_BEGIN = "<!-- bench/fanout.py: begin -->"
SECTION_END = "<!-- bench/fanout.py: end -->"

RUNS = "backupruns"
NAMESPACE_PREFIX = "bench-fanout-"
# A throwaway token shared by the sidecars and the Secret the operator reads.
TOKEN_SECRET = "sidecar-token"  # noqa: S105 (a Secret's name)
TOKEN = "bench-sidecar-token"  # noqa: S105
TERMINAL = frozenset({"Succeeded", "PartiallyFailed", "Failed"})

TARGET_TOTAL_SECONDS = 3.0
TARGET_STATUS_WRITES = 10
TARGET_PEAK_RSS_MB = 150.0

FIRST_HOST = 10                 # sidecars listen on 127.0.0.10, .11, ...
SIDECAR_START_TIMEOUT = 300.0   # 50 Python processes starting together on 2 cores
OPERATOR_START_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                   "all_proxy")


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class StatusWrite:
    """One status change as the watch saw it: seconds after create, and the keys it changed."""

    at: float
    keys: list[str]


@dataclass
class RunFigures:
    name: str
    phase: str
    nodes_succeeded: str
    total_seconds: float
    writes: list[StatusWrite] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    @property
    def status_writes(self) -> int:
        return len(self.writes)


# ---------------------------------------------------------------------------------------
# Processes


def hosts(count: int) -> list[str]:
    if FIRST_HOST + count > 255:
        raise SystemExit(f"at most {255 - FIRST_HOST} sidecars fit on 127.0.0.x")
    return [f"127.0.0.{FIRST_HOST + index}" for index in range(count)]


def port_free_on_every_host(addresses: Sequence[str], *, attempts: int = 5) -> int:
    """A port that every address can bind, so all sidecars share it (as pods would)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for address in addresses:
                with socket.socket() as sock:
                    sock.bind((address, port))
        except OSError:
            continue
        return port
    raise SystemExit(f"no port was free on all of {addresses[0]}..{addresses[-1]}")


def stop_all(processes: Sequence[Process]) -> None:
    """Ask every process to stop at once, then wait for each; stragglers get SIGKILL."""
    for process in processes:
        if process.running and process.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGTERM)
    for process in processes:
        process.stop()


def start_sidecars(*, workdir: Path, addresses: Sequence[str], port: int,
                   delay: float) -> list[Sidecar]:
    sidecars = [fake_sidecar(workdir=workdir / f"sidecar-{address}", host=address, port=port,
                             token=TOKEN, delay=delay)
                for address in addresses]
    for sidecar in sidecars:
        sidecar.process.start()
    return sidecars


def wait_for_sidecars(sidecars: Sequence[Sidecar], *, timeout: float) -> None:
    """Poll every sidecar's /healthz until all answer, with a progress line as more do."""
    started = time.monotonic()
    pending = list(sidecars)
    reported = -1
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while pending:
            for sidecar in list(pending):
                if not sidecar.process.running:
                    raise SystemExit(f"sidecar {sidecar.endpoint} exited:\n"
                                     f"{sidecar.process.output()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{sidecar.url}/healthz").status_code == 200:
                        pending.remove(sidecar)
            healthy = len(sidecars) - len(pending)
            elapsed = time.monotonic() - started
            if healthy != reported:
                progress(f"[bench] sidecars healthy: {healthy}/{len(sidecars)} "
                         f"({elapsed:.0f} s)")
                reported = healthy
            if pending and elapsed > timeout:
                raise SystemExit(f"{len(pending)} sidecars not healthy after {timeout:.0f} s, "
                                 f"first {pending[0].endpoint}: see {pending[0].process.log}")
            if pending:
                time.sleep(0.5)


def liveness_url(process: Process) -> str:
    return process.argv[process.argv.index("--liveness") + 1]


def wait_for_operator(process: Process, *, timeout: float) -> None:
    """The liveness endpoint answers once kopf's start-up handlers have finished."""
    url = liveness_url(process)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if not process.running:
                raise SystemExit(f"the operator exited:\n{process.output()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get(url).status_code == 200:
                    return
            time.sleep(0.2)
    raise SystemExit(f"the operator's {url} did not answer within {timeout:.0f} s; "
                     f"see {process.log}")


def peak_rss_mb(pid: int) -> float:
    """VmHWM, the resident set's high-water mark, of a live process, in MB (10^6 bytes)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB$", text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"/proc/{pid}/status has no VmHWM line")
    return int(match.group(1)) * 1024 / 1e6


# ---------------------------------------------------------------------------------------
# The cluster side


def api_client(plane: ControlPlane) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(plane.kubeconfig), persist_config=False)
    api.configuration.proxy = None
    return api


def prepare_cluster(plane: ControlPlane, api: client.ApiClient) -> str:
    """Apply the CRDs and make a namespace holding the token Secret; returns its name."""
    crds = sorted(str(path) for path in (REPO_ROOT / "crds").glob("*.yaml"))
    file_args = [arg for path in crds for arg in ("-f", path)]
    applied = kubectl("apply", "--server-side", "--force-conflicts", "-o", "name", *file_args,
                      kubeconfig=plane.kubeconfig)
    names = [line.strip() for line in applied.stdout.splitlines() if line.strip()]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *names,
            kubeconfig=plane.kubeconfig)

    core = client.CoreV1Api(api)
    made = core.create_namespace(client.V1Namespace(
        metadata=client.V1ObjectMeta(generate_name=NAMESPACE_PREFIX)))
    assert made.metadata is not None
    namespace = str(made.metadata.name)
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=TOKEN_SECRET), string_data={"token": TOKEN}))
    wait_for_custom_storage(client.CustomObjectsApi(api), namespace)
    return namespace


def wait_for_custom_storage(custom: client.CustomObjectsApi, namespace: str,
                            timeout: float = 60.0) -> None:
    """Until both kinds can be listed: an Established CRD may still answer 429 "storage is
    (re)initializing" for a moment, and kopf would then start its watches a second later,
    which the first run would pay for."""
    deadline = time.monotonic() + timeout
    for plural in ("backupschedules", RUNS):
        while True:
            try:
                custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
                break
            except client.ApiException as error:
                if error.status != 429 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def measure_run(custom: client.CustomObjectsApi, *, namespace: str, name: str,
                endpoints: list[str], port: int, operator_pid: int) -> RunFigures:
    """Create one run and follow it with a watch until its phase is terminal."""
    body = run_manifest(name, cluster=sidecar_cluster(endpoints=endpoints, port=port,
                                                      token_secret=TOKEN_SECRET))
    started = time.perf_counter()
    created = cast(dict[str, Any], custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, RUNS, body))
    version = str(created["metadata"]["resourceVersion"])
    previous: dict[str, Any] = dict(created.get("status") or {})
    writes: list[StatusWrite] = []
    deadline = started + RUN_TIMEOUT

    # Watching from the create call's resourceVersion delivers every change after it,
    # even those made before the watch request reached the server.
    while time.perf_counter() < deadline:
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        remaining = max(1, int(deadline - time.perf_counter()))
        events = stream.stream(  # type: ignore[no-untyped-call]
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, RUNS,
            field_selector=f"metadata.name={name}", resource_version=version,
            timeout_seconds=remaining)
        for event in events:
            seen = time.perf_counter() - started
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                raise SystemExit(f"the watch on {name} failed: {obj}")
            version = str(obj["metadata"]["resourceVersion"])
            status: dict[str, Any] = dict(obj.get("status") or {})
            if kind == "MODIFIED" and status != previous:
                changed = sorted(key for key in status.keys() | previous.keys()
                                 if status.get(key) != previous.get(key))
                writes.append(StatusWrite(at=seen, keys=changed))
            previous = status
            if status.get("phase") in TERMINAL:
                stream.stop()  # type: ignore[no-untyped-call]
                return RunFigures(name=name, phase=str(status["phase"]),
                                  nodes_succeeded=str(status.get("nodesSucceeded")),
                                  total_seconds=seen, writes=writes,
                                  peak_rss_mb=peak_rss_mb(operator_pid))
    raise SystemExit(f"run {name} was not terminal {RUN_TIMEOUT:.0f} s after its creation "
                     f"(last status phase: {previous.get('phase')})")


# ---------------------------------------------------------------------------------------
# Report


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    # The machine may be shared: the load when the benchmark starts says how quiet it was.
    load = f"{os.getloadavg()[0]:.2f}"
    return {"nproc": str(len(os.sched_getaffinity(0))), "python": platform.python_version(),
            "cpu": cpu, "kernel": platform.release(), "load average at start": load}


def command_line() -> str:
    script = Path(sys.argv[0]).resolve().relative_to(REPO_ROOT)
    direct = " ".join([".venv/bin/python", str(script), *sys.argv[1:]])
    return f"make bench  ({direct})" if os.environ.get("MAKELEVEL") else direct


@dataclass(frozen=True)
class Figure:
    """One measured quantity over all runs, with its target; judged by its worst run."""

    label: str
    values: list[float]
    decimals: int
    target: float
    inclusive: bool = False

    def spread(self) -> list[str]:
        low, middle, high = min(self.values), statistics.median(self.values), max(self.values)
        return [f"{value:.{self.decimals}f}" for value in (low, middle, high)]

    @property
    def target_text(self) -> str:
        return f"{'<=' if self.inclusive else '<'} {self.target:g}"

    @property
    def outcome(self) -> str:
        worst = max(self.values)
        met = worst <= self.target if self.inclusive else worst < self.target
        return "met" if met else "MISSED"


@dataclass(frozen=True)
class Report:
    runs: list[RunFigures]
    sidecars: int
    delay: float
    command: str
    machine: dict[str, str]
    date: str
    idle_rss_mb: float

    def figures(self) -> list[Figure]:
        return [
            Figure("total (s)", [run.total_seconds for run in self.runs], 2,
                   TARGET_TOTAL_SECONDS),
            Figure("status writes", [float(run.status_writes) for run in self.runs], 0,
                   TARGET_STATUS_WRITES, inclusive=True),
            Figure("operator peak RSS (MB)", [run.peak_rss_mb for run in self.runs], 1,
                   TARGET_PEAK_RSS_MB),
        ]

    def terminal_lines(self) -> list[str]:
        lines = [f"command: {self.command}",
                 "machine: " + ", ".join(f"{k} {v}" for k, v in self.machine.items()),
                 f"date: {self.date}",
                 f"operator RSS before the first run: {self.idle_rss_mb:.1f} MB"]
        for run in self.runs:
            first = f"{run.writes[0].at:.2f} s" if run.writes else "-"
            lines.append(f"{run.name}: {run.phase} {run.nodes_succeeded}, "
                         f"total {run.total_seconds:.2f} s, {run.status_writes} status writes "
                         f"(first at {first}), operator peak RSS {run.peak_rss_mb:.1f} MB")
        for figure in self.figures():
            low, middle, high = figure.spread()
            lines.append(f"{figure.label}: min {low} / median {middle} / max {high}  "
                         f"(target {figure.target_text}: {figure.outcome})")
        return lines

    def markdown(self) -> str:
        machine = ", ".join(f"{key} {value}" for key, value in self.machine.items())
        rows = [f"| {run.name} | {run.phase} {run.nodes_succeeded} | {run.total_seconds:.2f} "
                f"| {run.status_writes} | {run.peak_rss_mb:.1f} |" for run in self.runs]
        summary = [f"| {figure.label} | {' | '.join(figure.spread())} | {figure.target_text} "
                   f"| {figure.outcome} |" for figure in self.figures()]
        about = textwrap.fill(
            f"One BackupRun over {self.sidecars} real sidecar processes whose fake nodetool "
            f"sleeps {self.delay:g} s, against a local kube-apiserver and etcd, repeated "
            f"{len(self.runs)} times with one operator process. Total runs from the create "
            "call until a watch sees a terminal phase; status writes are the MODIFIED events "
            "that changed `.status`; peak RSS is the operator's VmHWM after each run, so it "
            "accumulates over the runs. A target is met when every run meets it.", width=92)
        return "\n".join([
            SECTION_BEGIN,
            f"## One BackupRun over {self.sidecars} sidecars",
            "",
            "Written by `bench/fanout.py`; the next run replaces this section.",
            "",
            about,
            "",
            f"- command: `{self.command}`",
            f"- date: {self.date}",
            f"- machine: {machine}",
            f"- operator RSS before the first run: {self.idle_rss_mb:.1f} MB",
            "",
            "| run | phase | total (s) | status writes | operator peak RSS (MB) |",
            "| --- | --- | ---: | ---: | ---: |",
            *rows,
            "",
            "| figure | min | median | max | target | outcome |",
            "| --- | ---: | ---: | ---: | --- | --- |",
            *summary,
            SECTION_END,
        ])


def update_benchmarks(section: str, path: Path = BENCHMARKS) -> None:
    """Replace this benchmark's section of BENCHMARKS.md, or add it, keeping the rest."""
    text = path.read_text() if path.exists() else (
        "# Benchmarks\n\nFigures measured on the machine named in each section; the scripts "
        "in bench/ write them. They are reports, not pass/fail checks.\n")
    pattern = re.compile(re.escape(SECTION_BEGIN) + r".*?" + re.escape(SECTION_END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


# ---------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sidecars", type=int, default=50, help="how many (default 50)")
    parser.add_argument("--delay", type=float, default=1.0,
                        help="seconds the fake nodetool sleeps (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--max-concurrent-nodes", type=int, default=None,
                        help="passed to the operator (default: the operator's own)")
    parser.add_argument("--no-write", action="store_true",
                        help="print the figures only; leave BENCHMARKS.md alone")
    parser.add_argument("--show-writes", action="store_true",
                        help="print each status write: when, and which status keys it changed")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (logs) even when everything went well")
    return parser.parse_args(argv)


def interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C does, so the clean-up below runs either way."""

    def raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


@contextlib.contextmanager
def cleanup_uninterrupted() -> Iterator[None]:
    """A second Ctrl-C during clean-up must not leave half the processes running."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_sigterm()
    # Only loopback processes started here are contacted; no proxy may see that traffic.
    for variable in PROXY_VARIABLES:
        os.environ.pop(variable, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.0/8,localhost"

    command, machine = command_line(), machine_facts()
    progress(f"[bench] command: {command}")
    progress("[bench] machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    workdir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    progress(f"[bench] work folder (logs): {workdir}")

    addresses = hosts(args.sidecars)
    port = port_free_on_every_host(addresses)
    started: list[Process] = []
    plane: ControlPlane | None = None
    api: client.ApiClient | None = None
    namespace: str | None = None
    succeeded = False
    try:
        plane = ControlPlane.start(workdir=workdir / "control-plane", progress=progress)
        api = api_client(plane)
        namespace = prepare_cluster(plane, api)
        custom = client.CustomObjectsApi(api)

        progress(f"[bench] starting {args.sidecars} sidecars on {addresses[0]}.."
                 f"{addresses[-1]}:{port}, nodetool delay {args.delay:g} s")
        sidecars = start_sidecars(workdir=workdir, addresses=addresses, port=port,
                                  delay=args.delay)
        started.extend(sidecar.process for sidecar in sidecars)
        wait_for_sidecars(sidecars, timeout=SIDECAR_START_TIMEOUT)

        extra = ([] if args.max_concurrent_nodes is None
                 else ["--max-concurrent-nodes", str(args.max_concurrent_nodes)])
        operator = operator_process(kubeconfig=plane.kubeconfig, log=workdir / "operator.log",
                                    namespaces=[namespace], extra=extra).start()
        started.append(operator)
        wait_for_operator(operator, timeout=OPERATOR_START_TIMEOUT)
        assert operator.popen is not None
        idle_rss = peak_rss_mb(operator.popen.pid)
        progress(f"[bench] operator up (pid {operator.popen.pid}, {idle_rss:.1f} MB); "
                 f"{args.runs} runs follow")

        figures: list[RunFigures] = []
        stamp = time.strftime("%H%M%S", time.gmtime())
        for index in range(1, args.runs + 1):
            run = measure_run(custom, namespace=namespace, name=f"fanout-{stamp}-{index}",
                              endpoints=[sidecar.endpoint for sidecar in sidecars], port=port,
                              operator_pid=operator.popen.pid)
            figures.append(run)
            print(f"run {index}: {run.phase} {run.nodes_succeeded}, total "
                  f"{run.total_seconds:.2f} s, {run.status_writes} status writes, "
                  f"operator peak RSS {run.peak_rss_mb:.1f} MB", flush=True)
            if args.show_writes:
                for write in run.writes:
                    print(f"    +{write.at:5.2f} s  {', '.join(write.keys)}")

        report = Report(runs=figures, sidecars=args.sidecars, delay=args.delay,
                        command=command, machine=machine, idle_rss_mb=idle_rss,
                        date=time.strftime("%a %b %e %H:%M:%S UTC %Y", time.gmtime()))
        print()
        print("\n".join(report.terminal_lines()))
        succeeded = all(run.phase == "Succeeded" for run in figures)
        if not succeeded:
            print(f"not every run succeeded: the figures are not written; see {workdir}")
            return 1
        if not args.no_write:
            update_benchmarks(report.markdown())
            print(f"figures written to {BENCHMARKS.relative_to(REPO_ROOT)}")
        return 0
    except KeyboardInterrupt:
        progress("[bench] interrupted; stopping everything it started")
        return 130
    finally:
        with cleanup_uninterrupted():
            stop_all(started)
            if api is not None:
                if plane is not None and plane.uses_existing_cluster and namespace:
                    with contextlib.suppress(client.ApiException):
                        client.CoreV1Api(api).delete_namespace(namespace)
                api.close()  # type: ignore[no-untyped-call]
            if plane is not None:
                plane.stop()
            if succeeded and not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                progress(f"[bench] logs kept in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
