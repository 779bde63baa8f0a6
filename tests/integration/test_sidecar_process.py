"""The installed `cassandra-backup-sidecar` command, run as a process on 127.0.0.1.

Each test starts the real console script with the fake nodetool, which works on real
snapshot folders in a temporary data directory, and speaks HTTP to it as the operator
would. The sidecar picks its own free port (`--port 0`) and the test reads it from the
"listening on" log line, so no port is ever guessed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cassandra_backup.sidecar.client import SidecarClient
from support import fake_nodetool

SIDECAR_COMMAND = Path(sys.executable).parent / "cassandra-backup-sidecar"
TOKEN = "process-test-token-91c4d2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STARTUP_SECONDS = 30.0
LISTENING = re.compile(r"listening on (https?://127\.0\.0\.1:\d+)")


@dataclass
class RunningSidecar:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    nodetool_log: Path
    data_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def nodetool_calls(self, command: str) -> list[list[str]]:
        if not self.nodetool_log.exists():
            return []
        calls = [json.loads(line) for line in self.nodetool_log.read_text().splitlines()]
        return [call for call in calls if len(call) > 4 and call[4] == command]


def _require_console_script() -> None:
    if not SIDECAR_COMMAND.exists():
        pytest.fail(
            f"{SIDECAR_COMMAND} is missing: install the project with `.venv/bin/pip install -e .`"
        )


@contextmanager
def run_sidecar(
    tmp_path: Path,
    *,
    args: Sequence[str] = (),
    fake_env: Mapping[str, str] | None = None,
    token_in_file: bool = False,
) -> Iterator[RunningSidecar]:
    """Start the sidecar, wait until it listens, and stop it with SIGTERM afterwards."""
    _require_console_script()
    data_dir = tmp_path / "data"
    if not data_dir.exists():
        fake_nodetool.seed_data_dir(data_dir, {"ks1": ["users", "events"], "ks2": ["orders"]})
    launcher = fake_nodetool.install_launcher(tmp_path)
    log_path, nodetool_log = tmp_path / "sidecar.log", tmp_path / "nodetool.log"

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FAKE_NODETOOL_DATA_DIR": str(data_dir),
        "FAKE_NODETOOL_LOG": str(nodetool_log),
        **(fake_env or {}),
    }
    command = [
        str(SIDECAR_COMMAND),
        "--host=127.0.0.1",
        "--port=0",
        f"--nodetool={launcher}",
        f"--data-dir={data_dir}",
        *args,
    ]
    if token_in_file:
        token_file = tmp_path / "token"
        token_file.write_text(f"{TOKEN}\n")
        command.append(f"--token-file={token_file}")
    else:
        env["CASSANDRA_BACKUP_SIDECAR_TOKEN"] = TOKEN

    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
    try:
        url = _wait_until_listening(process, log_path)
        yield RunningSidecar(url, process, log_path, nodetool_log, data_dir)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        found = LISTENING.search(log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            pytest.fail(f"the sidecar exited with {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"the sidecar did not listen within {STARTUP_SECONDS} s:\n{log_path.read_text()}")


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[RunningSidecar]:
    with run_sidecar(tmp_path) as running:
        yield running


def _http(
    running: RunningSidecar,
    *,
    headers: Mapping[str, str] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.Client:
    return httpx.Client(base_url=running.url, headers=headers, timeout=60.0, verify=verify)


def test_probes_answer_without_a_token(sidecar: RunningSidecar) -> None:
    with _http(sidecar) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").json() == {"status": "ready"}


def test_repeated_snapshot_is_200_with_one_nodetool_snapshot(sidecar: RunningSidecar) -> None:
    request = {"tag": "nightly-20120503-1800", "keyspaces": ["ks1"]}
    with _http(sidecar, headers=AUTH) as http:
        first = http.post("/v1/snapshots", json=request)
        second = http.post("/v1/snapshots", json=request)

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == {**first.json(), "created": False}
    assert first.json()["keyspaces"] == ["ks1"]
    assert sidecar.nodetool_calls("snapshot") == [
        ["-h", "127.0.0.1", "-p", "7199", "snapshot", "-t", "nightly-20120503-1800", "--", "ks1"]
    ]


def test_sizes_are_the_bytes_of_the_snapshot_folders(sidecar: RunningSidecar) -> None:
    with _http(sidecar, headers=AUTH) as http:
        body = http.post("/v1/snapshots", json={"tag": "t", "keyspaces": ["ks1", "ks2"]}).json()

    def folder_bytes(keyspace: str) -> int:
        return sum(
            path.stat().st_size
            for path in sidecar.data_dir.glob(f"{keyspace}/*/snapshots/t/*")
            if path.is_file()
        )

    assert body["keyspaceSizes"] == {"ks1": folder_bytes("ks1"), "ks2": folder_bytes("ks2")}
    assert body["sizeBytes"] == folder_bytes("ks1") + folder_bytes("ks2")


def test_same_tag_with_other_keyspaces_is_409(sidecar: RunningSidecar) -> None:
    with _http(sidecar, headers=AUTH) as http:
        http.post("/v1/snapshots", json={"tag": "t", "keyspaces": ["ks1"]})
        response = http.post("/v1/snapshots", json={"tag": "t", "keyspaces": ["ks1", "ks2"]})

    assert response.status_code == 409
    assert "already exists on this node with keyspaces ks1" in response.json()["error"]
    assert len(sidecar.nodetool_calls("snapshot")) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"tag": "../etc", "keyspaces": ["ks1"]}, id="parent-tag"),
        pytest.param({"tag": "-rf", "keyspaces": ["ks1"]}, id="option-tag"),
        pytest.param({"tag": "a/b", "keyspaces": ["ks1"]}, id="slash-tag"),
        pytest.param({"tag": "t", "keyspaces": ["--help"]}, id="option-keyspace"),
        pytest.param({"tag": "t", "keyspaces": ["../ks1"]}, id="path-keyspace"),
    ],
)
def test_hostile_names_are_400_and_run_no_nodetool(
    sidecar: RunningSidecar, body: dict[str, object]
) -> None:
    with _http(sidecar, headers=AUTH) as http:
        response = http.post("/v1/snapshots", json=body)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()
    assert sidecar.nodetool_calls("snapshot") == []


def test_delete_is_204_then_404(sidecar: RunningSidecar) -> None:
    with _http(sidecar, headers=AUTH) as http:
        http.post("/v1/snapshots", json={"tag": "t", "keyspaces": ["ks2"]})
        first = http.delete("/v1/snapshots/t")
        second = http.delete("/v1/snapshots/t")
        listing = http.get("/v1/snapshots").json()

    assert (first.status_code, second.status_code) == (204, 404)
    assert listing == {"snapshots": []}


def test_missing_or_wrong_token_is_401(sidecar: RunningSidecar) -> None:
    with _http(sidecar) as http:
        missing = http.get("/v1/snapshots")
        wrong = http.get("/v1/snapshots", headers={"Authorization": "Bearer nope"})

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_token_from_a_file_is_accepted(tmp_path: Path) -> None:
    with run_sidecar(tmp_path, token_in_file=True) as running, _http(running, headers=AUTH) as http:
        assert http.get("/v1/snapshots").status_code == 200


def test_cassandra_down_is_503_on_snapshot_and_readyz(tmp_path: Path) -> None:
    down = {"FAKE_NODETOOL_DOWN": "1"}
    with run_sidecar(tmp_path, fake_env=down) as running, _http(running, headers=AUTH) as http:
        snapshot = http.post("/v1/snapshots", json={"tag": "t", "keyspaces": ["ks1"]})
        ready = http.get("/readyz")

    assert snapshot.status_code == 503
    assert ready.status_code == 503
    assert "Failed to connect to '127.0.0.1:7199'" in snapshot.json()["error"]
    assert "Failed to connect to '127.0.0.1:7199'" in ready.json()["error"]


def test_nodetool_timeout_is_504(tmp_path: Path) -> None:
    slow = {"FAKE_NODETOOL_DELAY": "30"}
    args = ["--nodetool-timeout=1"]
    with (
        run_sidecar(tmp_path, args=args, fake_env=slow) as running,
        _http(running, headers=AUTH) as http,
    ):
        response = http.post("/v1/snapshots", json={"tag": "t", "keyspaces": ["ks1"]})

    assert response.status_code == 504
    assert response.json()["error"].startswith(
        "nodetool snapshot did not finish within 1 s and was stopped"
    )


def test_token_is_never_logged(tmp_path: Path) -> None:
    with run_sidecar(tmp_path, args=["--log-format=json"]) as running:
        with _http(running) as http:
            http.get("/v1/snapshots", headers={"Authorization": f"Bearer {TOKEN}x"})
            http.post("/v1/snapshots", headers=AUTH, json={"tag": "t", "keyspaces": ["ks1"]})
        running.process.send_signal(signal.SIGTERM)
        running.process.wait(timeout=30)
        log = running.log()

    messages = [json.loads(line)["message"] for line in log.splitlines()]
    assert any(message.startswith("snapshot t taken: keyspaces ks1") for message in messages)
    assert TOKEN not in log


def test_an_oversized_authorization_header_is_refused_without_logging_it(
        tmp_path: Path) -> None:
    secret_looking = "s3cr3t" * 3000
    with run_sidecar(tmp_path) as running:
        with _http(running) as http:
            answer = http.get("/v1/snapshots",
                              headers={"Authorization": f"Bearer {secret_looking}"})
            assert http.get("/healthz").status_code == 200, "it keeps serving"
        running.process.send_signal(signal.SIGTERM)
        running.process.wait(timeout=30)
        log = running.log()

    assert answer.status_code == 400
    assert "s3cr3t" not in log
    assert "refused a malformed HTTP request (LineTooLong, HTTP 400)" in log


def test_sigterm_stops_it_cleanly(tmp_path: Path) -> None:
    with run_sidecar(tmp_path) as running:
        running.process.send_signal(signal.SIGTERM)
        code = running.process.wait(timeout=30)

    assert code == 0
    assert "stopping" in running.log()


def test_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    _require_console_script()

    completed = subprocess.run(
        [str(SIDECAR_COMMAND), "--host=127.0.0.1", "--port=0"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 2
    assert "a bearer token is required: pass --token-file PATH or set " in completed.stderr
    assert "CASSANDRA_BACKUP_SIDECAR_TOKEN" in completed.stderr


async def test_operator_client_round_trip(tmp_path: Path) -> None:
    with run_sidecar(tmp_path) as running:
        async with SidecarClient(base_url=running.url, token=TOKEN) as client:
            assert await client.ready() is True
            taken = await client.take_snapshot(tag="nightly", keyspaces=[])
            listed = await client.list_snapshots()
            assert await client.clear_snapshot("nightly") is True

    assert taken.created is True
    assert taken.keyspaces == ["ks1", "ks2", "system", "system_schema"]
    assert [(s.tag, s.size_bytes) for s in listed] == [("nightly", taken.size_bytes)]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_serves_https_with_a_certificate_pair(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    args = [f"--tls-cert={cert}", f"--tls-key={key}"]

    with run_sidecar(tmp_path, args=args) as running:
        assert running.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        with _http(running, headers=AUTH, verify=trust) as http:
            assert http.get("/v1/snapshots").status_code == 200
