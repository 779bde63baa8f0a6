"""`make demo`: the whole product on this machine, on real components, then gone again.

It starts a local control plane (kube-apiserver and etcd), one Apache Cassandra node
with a keyspace of sample data, a snapshot sidecar beside it running the real
nodetool, and the operator; applies the manifests in examples/ (a schedule that fires
every minute and keeps one minute of backups, and a backup right now); waits for two
ticks; prints what `kubectl get` shows and the snapshot folders on disk; and stops
everything it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.cassandra import CassandraNode  # noqa: E402
from support.controlplane import ControlPlane  # noqa: E402
from support.kubectl import kubectl  # noqa: E402
from support.processes import (  # noqa: E402
    free_port,
    operator_process,
    real_sidecar,
    wait_for,
    wait_healthy,
)

NAMESPACE = "cassandra"
EXAMPLES = ["00-namespace.yaml", "01-sidecar-token.yaml", "10-schedule-every-minute.yaml",
            "20-backuprun-now.yaml"]
ROWS = 500


def say(message: str) -> None:
    print(f"[demo {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def manifests(port: int) -> tuple[str, str]:
    """The examples as one YAML stream, pointed at the demo sidecar's port; and the token."""
    documents, token = [], ""
    for name in EXAMPLES:
        for document in yaml.safe_load_all((ROOT / "examples" / name).read_text()):
            if document["kind"] == "Secret":
                token = document["stringData"]["token"]
            sidecars = document.get("spec", {}).get("cluster", {}).get("sidecars")
            if sidecars is not None:
                sidecars["port"] = port
            documents.append(document)
    return yaml.safe_dump_all(documents, sort_keys=False), token


def seed(node: CassandraNode) -> None:
    session = node.cql_session()
    session.execute("CREATE KEYSPACE IF NOT EXISTS demo WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.execute("CREATE TABLE IF NOT EXISTS demo.readings "
                    "(sensor int, at timestamp, value double, PRIMARY KEY (sensor, at))")
    insert = session.prepare("INSERT INTO demo.readings (sensor, at, value) VALUES (?, ?, ?)")
    now = datetime.now(UTC)
    for row in range(ROWS):
        session.execute(insert, (row % 10, now.replace(microsecond=row), row * 0.5))


def pod_for(kubeconfig: Path, ip: str) -> None:
    """A Pod object for the Cassandra node: no kubelet runs it, its status says where it is."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "cassandra-0", "namespace": NAMESPACE,
                        "labels": {"app": "cassandra"}},
           "spec": {"containers": [{"name": "cassandra", "image": "cassandra:5.0"}]}}
    kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=yaml.safe_dump(pod))
    status = {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                         "conditions": [{"type": "Ready", "status": "True"}]}}
    kubectl("patch", "pod", "cassandra-0", "-n", NAMESPACE, "--subresource=status",
            "--type=merge", "-p", yaml.safe_dump(status), kubeconfig=kubeconfig)


def runs_of(kubeconfig: Path) -> list[dict[str, object]]:
    listing = kubectl("get", "backupruns", "-n", NAMESPACE, "-o", "yaml",
                      kubeconfig=kubeconfig).stdout
    items: list[dict[str, object]] = yaml.safe_load(listing)["items"]
    return items


def finished_scheduled_runs(kubeconfig: Path) -> set[str]:
    """Names of the schedule's runs that have finished (retention may remove them later)."""
    done = set()
    for run in runs_of(kubeconfig):
        labels = run["metadata"].get("labels") or {}  # type: ignore[attr-defined]
        phase = (run.get("status") or {}).get("phase")  # type: ignore[attr-defined]
        if "backups.cassandra.dev/schedule" in labels and phase in (
                "Succeeded", "PartiallyFailed", "Failed"):
            done.add(str(run["metadata"]["name"]))  # type: ignore[index]
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".demo")
    parser.add_argument("--ticks", type=int, default=2, help="scheduled runs to wait for")
    parser.add_argument("--keep", action="store_true",
                        help="keep everything running afterwards, until Ctrl-C")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)   # what the previous demo left for a look
    workdir.mkdir(parents=True)
    started = time.monotonic()

    with ExitStack() as stack:
        try:
            say("starting the control plane (kube-apiserver, etcd, kube-controller-manager)")
            plane = stack.enter_context(ControlPlane.start(workdir=workdir / "kube",
                                                          controller_manager=True))
            kubeconfig = plane.kubeconfig
            kubectl("apply", "--server-side", "-f", str(ROOT / "crds"), kubeconfig=kubeconfig)
            kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s",
                    kubeconfig=kubeconfig)

            say("starting Apache Cassandra (Java 17); this takes 10-30 s")
            node = stack.enter_context(
                CassandraNode(workdir / "cassandra", cluster_name="Test_Cluster"))
            say(f"Cassandra is up in {node.startup_seconds or 0:.1f} s; "
                f"writing {ROWS} rows to demo.readings")
            seed(node)

            port = free_port("127.0.0.1")
            stream, token = manifests(port)
            sidecar = real_sidecar(workdir=workdir / "sidecar", host="127.0.0.1",
                                   port=port, token=token, nodetool=node.nodetool_path,
                                   jmx_host=node.jmx_host, jmx_port=node.jmx_port,
                                   data_dir=node.data_dir)
            stack.enter_context(sidecar.process.start())
            wait_healthy(sidecar)
            say(f"sidecar listening on {sidecar.url}, running {node.nodetool_path}")

            operator = operator_process(kubeconfig=kubeconfig,
                                        log=workdir / "operator.log",
                                        namespaces=[NAMESPACE])
            stack.enter_context(operator.start())
            say(f"operator started (log: {operator.log})")

            kubectl("apply", "-f", str(ROOT / "examples" / "00-namespace.yaml"),
                    kubeconfig=kubeconfig)
            wait_for(lambda: kubectl("get", "serviceaccount", "default", "-n", NAMESPACE,
                                     kubeconfig=kubeconfig, check=False).returncode == 0,
                     timeout=60, what="the namespace's default ServiceAccount")
            pod_for(kubeconfig, "127.0.0.1")
            applied = kubectl("apply", "-f", "-", kubeconfig=kubeconfig, input=stream).stdout
            print(applied, end="", flush=True)

            say(f"waiting for {args.ticks} scheduled runs (one a minute)")
            finished: set[str] = set()
            reported = -1
            deadline = time.monotonic() + 60 * (args.ticks + 1) + 30
            while time.monotonic() < deadline:
                finished |= finished_scheduled_runs(kubeconfig)
                if len(finished) != reported:
                    reported = len(finished)
                    say(f"{reported}/{args.ticks} scheduled runs finished: "
                        f"{', '.join(sorted(finished)) or '-'}")
                if reported >= args.ticks:
                    break
                if not operator.running:
                    raise RuntimeError(f"the operator exited:\n{operator.output()[-3000:]}")
                time.sleep(2)
            else:
                raise RuntimeError(f"no {args.ticks} scheduled runs within the wait")
            wait_for(lambda: all((r.get("status") or {}).get("phase")  # type: ignore[attr-defined]
                                 in ("Succeeded", "PartiallyFailed", "Failed")
                                 for r in runs_of(kubeconfig)), timeout=60,
                     what="every run to finish")

            for what in ("backupschedules", "backupruns"):
                print(f"\n$ kubectl get {what} -n {NAMESPACE}")
                print(kubectl("get", what, "-n", NAMESPACE, kubeconfig=kubeconfig).stdout,
                      end="")
            print(f"\n$ kubectl get backupruns -n {NAMESPACE} "
                  "-l keyspace.backups.cassandra.dev/demo")
            print(kubectl("get", "backupruns", "-n", NAMESPACE, "-l",
                          "keyspace.backups.cassandra.dev/demo", kubeconfig=kubeconfig).stdout,
                  end="")
            print(f"\n$ kubectl get events -n {NAMESPACE} --field-selector "
                  "involvedObject.kind=BackupSchedule")
            print(kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                          "involvedObject.kind=BackupSchedule", "-o",
                          "custom-columns=REASON:.reason,MESSAGE:.message",
                          kubeconfig=kubeconfig).stdout, end="")

            print(f"\nSnapshot folders on disk under {node.data_dir}:")
            for folder in sorted(node.data_dir.glob("demo/*/snapshots/*")):
                size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                print(f"  {folder.relative_to(node.data_dir)}  ({size} bytes)")
            if args.keep:
                say("everything keeps running; try, in another shell:")
                print(f"  export KUBECONFIG={kubeconfig}\n"
                      f"  {ROOT / '.venv/bin/kubectl'} get cassandra-backups -n {NAMESPACE}\n"
                      "Ctrl-C stops it all.", flush=True)
                while True:
                    time.sleep(3600)
            say(f"done in {time.monotonic() - started:.0f} s; stopping everything")
            return 0
        except KeyboardInterrupt:
            say("interrupted; stopping everything")
            return 130
        except Exception as exc:
            say(f"failed: {exc}")
            return 1


if __name__ == "__main__":
    sys.exit(main())
