"""A real Kubernetes control plane on loopback, for the integration tests and the demo.

The operator's behaviour depends on what the API server really does: admission by the CRD
schema and CEL rules, RBAC, status subresources, watches. A fake would only echo our own
assumptions, so this starts the genuine `etcd` and `kube-apiserver` (and, on request,
`kube-controller-manager`, which owns ServiceAccount token Secrets, garbage collection and
namespace deletion) as child processes bound to 127.0.0.1.

Binaries are found in the order the design fixes: an existing cluster named by KUBECONFIG
(nothing is started then); a KUBEBUILDER_ASSETS folder, as envtest users already have; the
project's cache; else `hack/build-tools.sh` builds them once into that cache.

Every process gets its own process group and a log file in the work folder. Stopping
terminates whole groups, and so does a start-up that fails half way, so a failed run never
leaves an etcd holding a port. On Linux the children are also killed when the process that
started them dies, which covers a test runner killed outright.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import yaml

from .kubectl import kubectl_binary

Progress = Callable[[str], None]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-tools.sh"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "cassandra-backup-admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"

START_TIMEOUT_SECONDS = 90.0
STOP_GRACE_SECONDS = 5.0
PORT_CLASH_ATTEMPTS = 3
LOG_TAIL_LINES = 25

# In an existing cluster without a bearer token in its kubeconfig (kind uses client
# certificates), an admin token is minted for this ServiceAccount.
EXISTING_CLUSTER_ADMIN = "cassandra-backup-test-admin"


class ControlPlaneError(RuntimeError):
    """The control plane could not be found, built or started."""


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cache_bin_dir() -> Path:
    """Where `hack/build-tools.sh` puts the binaries it builds."""
    root = os.environ.get("CASSANDRA_BACKUP_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "cassandra-backup-operator"
    return base / "bin"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None


def find_binaries(*, controller_manager: bool, progress: Progress = print_progress) -> Binaries:
    """Locate etcd and kube-apiserver (and kube-controller-manager if asked), building any
    that neither KUBEBUILDER_ASSETS nor the cache holds.

    envtest asset folders carry no kube-controller-manager, so each binary is looked up on
    its own: assets first, then the cache, then a build of just what is missing.
    """
    wanted = ["etcd", "kube-apiserver"]
    if controller_manager:
        wanted.append("kube-controller-manager")

    found = {name: _find_prebuilt(name) for name in wanted}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        targets = sorted({"etcd" if name == "etcd" else "kube" for name in missing})
        for target in targets:
            _run_build(target, progress=progress)
        found = {name: _find_prebuilt(name) for name in wanted}

    located = {name: path for name, path in found.items() if path is not None}
    still_missing = [name for name in wanted if name not in located]
    if still_missing:
        raise ControlPlaneError(
            f"{', '.join(still_missing)} not found in {cache_bin_dir()} after building"
        )
    return Binaries(
        etcd=located["etcd"],
        kube_apiserver=located["kube-apiserver"],
        kube_controller_manager=located.get("kube-controller-manager"),
    )


def _find_prebuilt(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        folder = Path(assets)
        holds_envtest_pair = all(_is_executable(folder / n) for n in ("etcd", "kube-apiserver"))
        if holds_envtest_pair and _is_executable(folder / name):
            return folder / name

    # The build script touches a stamp only after a binary is completely written, so a
    # binary without its stamp may be the half-copied output of an interrupted build.
    cache = cache_bin_dir()
    stamp_prefix = ".etcd-" if name == "etcd" else ".kube-"
    has_stamp = any(cache.glob(f"{stamp_prefix}*"))
    if has_stamp and _is_executable(cache / name):
        return cache / name
    return None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _run_build(target: str, *, progress: Progress) -> None:
    progress(f"[control-plane] {target} binaries not found; building with {BUILD_SCRIPT}")
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            ["bash", str(BUILD_SCRIPT), target],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    except OSError as error:
        raise ControlPlaneError(f"cannot run {BUILD_SCRIPT}: {error}") from error

    assert process.stdout is not None
    recent: list[str] = []
    for line in process.stdout:
        line = line.rstrip("\n")
        progress(line)
        recent = [*recent[-(LOG_TAIL_LINES - 1) :], line]
    returncode = process.wait()

    if returncode != 0:
        tail = "\n".join(recent)
        raise ControlPlaneError(
            f"building {target} with {BUILD_SCRIPT} failed (exit {returncode}); "
            f"last output:\n{tail}"
        )
    progress(f"[control-plane] built {target} in {time.monotonic() - started:.0f} s")


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def exit_code(self) -> int | None:
        return self.process.poll()

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-LOG_TAIL_LINES:])


@dataclass
class ControlPlane:
    """A running control plane, or a handle on an existing cluster.

    Use `ControlPlane.start(workdir=...)` as a context manager; leaving it stops every
    process this object started. For an existing cluster nothing is started or stopped.
    """

    workdir: Path
    kubeconfig: Path
    server: str
    admin_token: str
    ca_file: Path | None
    uses_existing_cluster: bool
    runs_controller_manager: bool
    _children: list[_Child] = field(default_factory=list, repr=False)

    @classmethod
    def start(
        cls,
        *,
        workdir: Path,
        controller_manager: bool = False,
        progress: Progress = print_progress,
    ) -> ControlPlane:
        """Start a control plane whose files and logs live under `workdir`."""
        workdir.mkdir(parents=True, exist_ok=True)
        existing = os.environ.get("KUBECONFIG")
        if existing:
            plane = cls._attach(existing, workdir=workdir)
            progress(f"[control-plane] using the existing cluster at {plane.server}")
            return plane

        binaries = find_binaries(controller_manager=controller_manager, progress=progress)
        for attempt in range(1, PORT_CLASH_ATTEMPTS + 1):
            started = time.monotonic()
            try:
                plane = cls._launch(binaries, workdir=workdir / f"run-{attempt}")
            except ControlPlaneError as error:
                # Free ports are picked by binding and releasing them; another process may
                # take one in between, which only a fresh attempt can resolve.
                if "address already in use" not in str(error) or attempt == PORT_CLASH_ATTEMPTS:
                    raise
                progress(f"[control-plane] a port was taken meanwhile; retrying ({error})")
                continue
            progress(
                f"[control-plane] {plane.server} ready in {time.monotonic() - started:.1f} s; "
                f"logs in {plane.workdir}"
            )
            return plane
        raise AssertionError("unreachable")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the components this object started, by binary name."""
        return {child.name: child.process.pid for child in self._children}

    @property
    def log_files(self) -> dict[str, Path]:
        return {child.name: child.log_path for child in self._children}

    def stop(self) -> None:
        """Stop every started process, newest first; safe to call more than once."""
        _stop_children(self._children)
        self._children.clear()

    def kubeconfig_for_token(self, token: str, *, name: str, namespace: str | None = None) -> Path:
        """Write a kubeconfig that authenticates with `token` (a ServiceAccount's, say) and
        return its path; `name` labels the user and the file."""
        path = self.workdir / f"kubeconfig-{name}"
        _write_kubeconfig(
            path,
            server=self.server,
            ca_file=self.ca_file,
            user=name,
            token=token,
            namespace=namespace,
        )
        return path

    @classmethod
    def _launch(cls, binaries: Binaries, *, workdir: Path) -> ControlPlane:
        workdir.mkdir(parents=True, exist_ok=True)
        children: list[_Child] = []
        try:
            pki = _make_pki(workdir / "certs")
            admin_token = secrets.token_urlsafe(32)
            controller_manager_token = secrets.token_urlsafe(32)
            tokens = workdir / "tokens.csv"
            _write_private(
                tokens,
                f'{admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
                f"{controller_manager_token},{CONTROLLER_MANAGER_USER},"
                f'{CONTROLLER_MANAGER_USER},"system:masters"\n',
            )

            etcd_url = _start_etcd(binaries.etcd, workdir=workdir, children=children)
            server = _start_apiserver(
                binaries.kube_apiserver,
                workdir=workdir,
                etcd_url=etcd_url,
                pki=pki,
                tokens=tokens,
                children=children,
            )
            kubeconfig = workdir / "kubeconfig"
            _write_kubeconfig(
                kubeconfig, server=server, ca_file=pki.ca_cert, user=ADMIN_USER, token=admin_token
            )
            _wait_until(
                lambda: (
                    _http_get(f"{server}/readyz", ca_file=pki.ca_cert, token=admin_token)
                    == (200, "ok")
                ),
                what="kube-apiserver /readyz",
                children=children,
            )

            if binaries.kube_controller_manager is not None:
                manager_kubeconfig = workdir / "kubeconfig-controller-manager"
                _write_kubeconfig(
                    manager_kubeconfig,
                    server=server,
                    ca_file=pki.ca_cert,
                    user=CONTROLLER_MANAGER_USER,
                    token=controller_manager_token,
                )
                _start_controller_manager(
                    binaries.kube_controller_manager,
                    workdir=workdir,
                    kubeconfig=manager_kubeconfig,
                    pki=pki,
                    children=children,
                )
                # The default ServiceAccount appears once the controllers have synced; the
                # ServiceAccount admission plugin refuses Pods until it exists.
                default_account = f"{server}/api/v1/namespaces/default/serviceaccounts/default"
                _wait_until(
                    lambda: (
                        _http_get(default_account, ca_file=pki.ca_cert, token=admin_token)[0] == 200
                    ),
                    what="kube-controller-manager to create the default ServiceAccount",
                    children=children,
                )
        except BaseException:
            _stop_children(children)
            raise

        return cls(
            workdir=workdir,
            kubeconfig=kubeconfig,
            server=server,
            admin_token=admin_token,
            ca_file=pki.ca_cert,
            uses_existing_cluster=False,
            runs_controller_manager=binaries.kube_controller_manager is not None,
            _children=children,
        )

    @classmethod
    def _attach(cls, kubeconfig_env: str, *, workdir: Path) -> ControlPlane:
        """Use the current context of the cluster KUBECONFIG names, starting nothing."""
        view = subprocess.run(
            [
                str(kubectl_binary()),
                "config",
                "view",
                "--raw",
                "--minify",
                "--flatten",
                "-o",
                "json",
            ],
            env={**os.environ, "KUBECONFIG": kubeconfig_env},
            capture_output=True,
            text=True,
            check=False,
        )
        if view.returncode != 0:
            raise ControlPlaneError(
                f"cannot read the kubeconfig KUBECONFIG={kubeconfig_env}: {view.stderr.strip()}"
            )
        config: dict[str, Any] = json.loads(view.stdout)
        cluster: dict[str, Any] = config["clusters"][0]["cluster"]
        user: dict[str, Any] = config["users"][0]["user"] if config.get("users") else {}

        kubeconfig = workdir / "kubeconfig"
        _write_private(kubeconfig, view.stdout)

        ca_file: Path | None = None
        if "certificate-authority-data" in cluster:
            ca_file = workdir / "ca.crt"
            ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))

        token = user.get("token") or _mint_admin_token(kubeconfig)
        return cls(
            workdir=workdir,
            kubeconfig=kubeconfig,
            server=str(cluster["server"]),
            admin_token=str(token),
            ca_file=ca_file,
            uses_existing_cluster=True,
            runs_controller_manager=True,
        )


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    service_account_public_key: Path


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = cassandra-backup-test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _make_pki(cert_dir: Path) -> _Pki:
    """A throwaway CA, a serving certificate for 127.0.0.1 and a ServiceAccount key pair.

    The control plane lives for one test session, so keys are small and fast to generate
    and certificates are valid for a week.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    config = cert_dir / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    pki = _Pki(
        ca_cert=cert_dir / "ca.crt",
        ca_key=cert_dir / "ca.key",
        serving_cert=cert_dir / "apiserver.crt",
        serving_key=cert_dir / "apiserver.key",
        service_account_key=cert_dir / "sa.key",
        service_account_public_key=cert_dir / "sa.pub",
    )
    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    csr = cert_dir / "apiserver.csr"

    _openssl(
        "req",
        "-x509",
        "-config",
        config,
        "-extensions",
        "ca",
        *ec_key,
        "-keyout",
        pki.ca_key,
        "-out",
        pki.ca_cert,
        "-days",
        "7",
        "-subj",
        "/CN=cassandra-backup-test-ca",
    )
    _openssl(
        "req",
        "-new",
        "-config",
        config,
        *ec_key,
        "-keyout",
        pki.serving_key,
        "-out",
        csr,
        "-subj",
        "/CN=kube-apiserver",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        pki.ca_cert,
        "-CAkey",
        pki.ca_key,
        "-set_serial",
        str(secrets.randbits(63)),
        "-days",
        "7",
        "-extfile",
        config,
        "-extensions",
        "serving",
        "-out",
        pki.serving_cert,
    )
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-out",
        pki.service_account_key,
    )
    _openssl(
        "pkey", "-in", pki.service_account_key, "-pubout", "-out", pki.service_account_public_key
    )
    return pki


def _openssl(*args: str | Path) -> None:
    command = ["openssl", *(str(arg) for arg in args)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise ControlPlaneError("the openssl command is needed to make test certificates") from (
            error
        )
    if result.returncode != 0:
        raise ControlPlaneError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")


def _start_etcd(binary: Path, *, workdir: Path, children: list[_Child]) -> str:
    client_port, peer_port = _free_ports(2)
    client_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    _spawn(
        "etcd",
        [
            str(binary),
            "--name=test",
            f"--data-dir={workdir / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
            # Durability is worthless for a data dir deleted after the session, and fsync
            # dominates etcd's write latency on slow disks.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        workdir=workdir,
        children=children,
    )
    _wait_until(lambda: _etcd_is_healthy(client_url), what="etcd /health", children=children)
    return client_url


def _etcd_is_healthy(client_url: str) -> bool:
    status, body = _http_get(f"{client_url}/health")
    return status == 200 and '"true"' in body


def _start_apiserver(
    binary: Path,
    *,
    workdir: Path,
    etcd_url: str,
    pki: _Pki,
    tokens: Path,
    children: list[_Child],
) -> str:
    (port,) = _free_ports(1)
    _spawn(
        "kube-apiserver",
        [
            str(binary),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The endpoints of the in-cluster `kubernetes` Service may not be loopback, and
            # nothing runs in-cluster here to use them.
            "--endpoint-reconciler-type=none",
            f"--secure-port={port}",
            f"--cert-dir={pki.ca_cert.parent}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={tokens}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--profiling=false",
        ],
        workdir=workdir,
        children=children,
    )
    return f"https://127.0.0.1:{port}"


def _start_controller_manager(
    binary: Path, *, workdir: Path, kubeconfig: Path, pki: _Pki, children: list[_Child]
) -> None:
    _spawn(
        "kube-controller-manager",
        [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            # Nothing here probes the controller manager, so it serves no port at all.
            "--secure-port=0",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            # A real cluster gives each controller its own ServiceAccount. Minting those
            # dozens of accounts and tokens one by one adds five seconds to every start, and
            # the controllers' own permissions are not what these tests examine, so they all
            # act as the controller manager, which is a cluster admin here.
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--profiling=false",
        ],
        workdir=workdir,
        children=children,
    )


def _spawn(name: str, argv: list[str], *, workdir: Path, children: list[_Child]) -> None:
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    children.append(_Child(name=name, process=process, log_path=log_path, log_file=log_file))


def _die_with_parent() -> None:
    # SIGKILL, not SIGTERM: etcd and the API server get the signal together, and an API
    # server shutting down gracefully while its etcd vanishes hangs on forever.
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _stop_children(children: list[_Child]) -> None:
    # Newest first, one at a time: an API server whose etcd vanished under it spends its
    # whole grace period retrying instead of shutting down.
    for child in reversed(children):
        _signal_group(child, signal.SIGTERM)
        try:
            child.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.process.wait()
        # Anything the component forked shares its group and goes with it.
        _signal_group(child, signal.SIGKILL)
        child.log_file.close()


def _signal_group(child: _Child, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signum)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    children: list[_Child],
    timeout: float = START_TIMEOUT_SECONDS,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            code = child.exit_code()
            if code is not None:
                raise ControlPlaneError(
                    f"{child.name} exited with code {code} while waiting for {what}; "
                    f"last lines of {child.log_path}:\n{child.log_tail()}"
                )
        if condition():
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {child.log_path}:\n{child.log_tail()}" for child in children)
            raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(0.1)


# Only loopback addresses of processes started here are ever contacted, so proxies from
# the environment must not apply.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_get(
    url: str, *, ca_file: Path | None = None, token: str | None = None
) -> tuple[int, str]:
    """GET `url` and return (status, body); (0, reason) while the server is not listening."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # Only http and https URLs built in this module reach here.
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    opener = _NO_PROXY_OPENER
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    try:
        with opener.open(request, timeout=2) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error)


def _write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: Path | None,
    user: str,
    token: str,
    namespace: str | None = None,
) -> None:
    cluster: dict[str, Any] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_file.read_bytes()).decode()
    else:
        cluster["insecure-skip-tls-verify"] = True
    context: dict[str, Any] = {"cluster": "cassandra-backup-test", "user": user}
    if namespace:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cassandra-backup-test", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
    }
    _write_private(path, yaml.safe_dump(document, sort_keys=False))


def _write_private(path: Path, text: str) -> None:
    """Write a file that holds credentials, readable by its owner only from the start."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _mint_admin_token(kubeconfig: Path) -> str:
    """A cluster-admin bearer token for an existing cluster whose kubeconfig has none."""
    manifest = f"""\
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {EXISTING_CLUSTER_ADMIN}, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {EXISTING_CLUSTER_ADMIN}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
subjects:
  - {{kind: ServiceAccount, name: {EXISTING_CLUSTER_ADMIN}, namespace: kube-system}}
"""
    _kubectl_for_setup(kubeconfig, "apply", "-f", "-", stdin=manifest)
    token = _kubectl_for_setup(
        kubeconfig,
        "create",
        "token",
        EXISTING_CLUSTER_ADMIN,
        "-n",
        "kube-system",
        "--duration=24h",
    )
    return token.strip()


def _kubectl_for_setup(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    command = [str(kubectl_binary()), f"--kubeconfig={kubeconfig}", *args]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(
            f"cannot obtain an admin token from the existing cluster: {result.stderr.strip()}"
        )
    return result.stdout
