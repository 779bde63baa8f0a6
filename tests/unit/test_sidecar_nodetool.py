"""How the sidecar runs nodetool: argument lists, no shell, timeouts, and reading failures."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cassandra_backup.sidecar.nodetool import (
    TOKEN_ENV,
    CassandraUnreachable,
    CompletedCommand,
    Nodetool,
    NodetoolFailed,
    NodetoolNotFound,
    NodetoolSettings,
    NodetoolTimedOut,
    SnapshotAlreadyExists,
    UnknownKeyspace,
    child_environment,
    clear_snapshot_command,
    failure_for,
    run_command,
    snapshot_command,
    summarize_output,
    version_command,
)
from support import fake_nodetool

SETTINGS = NodetoolSettings(executable="/opt/cassandra/bin/nodetool", jmx_port=7299)
CONNECTION = ["/opt/cassandra/bin/nodetool", "-h", "127.0.0.1", "-p", "7299"]


def test_snapshot_of_named_keyspaces_puts_them_after_a_double_dash() -> None:
    command = snapshot_command(SETTINGS, tag="nightly", keyspaces=["ks1", "ks2"])

    assert command == [*CONNECTION, "snapshot", "-t", "nightly", "--", "ks1", "ks2"]


def test_snapshot_of_every_keyspace_has_no_double_dash() -> None:
    command = snapshot_command(SETTINGS, tag="nightly", keyspaces=[])

    assert command == [*CONNECTION, "snapshot", "-t", "nightly"]


def test_clear_snapshot_names_only_the_tag() -> None:
    assert clear_snapshot_command(SETTINGS, tag="nightly") == [
        *CONNECTION,
        "clearsnapshot",
        "-t",
        "nightly",
    ]


def test_version_command_uses_the_configured_jmx_endpoint() -> None:
    settings = NodetoolSettings(executable="nodetool", jmx_host="127.0.0.9", jmx_port=7199)

    assert version_command(settings) == ["nodetool", "-h", "127.0.0.9", "-p", "7199", "version"]


def test_each_value_stays_one_argument() -> None:
    command = snapshot_command(SETTINGS, tag="a b", keyspaces=["x y"])

    assert command[-4:] == ["-t", "a b", "--", "x y"]


async def test_arguments_reach_the_program_verbatim_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    hostile = f"$(touch {marker}); `touch {marker}` | touch {marker}"
    script = "import json, sys; print(json.dumps(sys.argv[1:]))"

    completed = await run_command(
        [sys.executable, "-c", script, hostile, "*"], timeout_seconds=30, env={}
    )

    assert json.loads(completed.stdout) == [hostile, "*"]
    assert not marker.exists()


def test_child_environment_leaves_out_the_bearer_token() -> None:
    environ = {TOKEN_ENV: "s3cret", "PATH": "/usr/bin", "JAVA_HOME": "/opt/java"}

    assert child_environment(environ) == {"PATH": "/usr/bin", "JAVA_HOME": "/opt/java"}


def _completed(subcommand: str, returncode: int, stderr: str, stdout: str = "") -> CompletedCommand:
    return CompletedCommand(
        args=[*CONNECTION, subcommand, "-t", "t"],
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
    )


REFUSED = (
    "nodetool: Failed to connect to '127.0.0.1:7299' - ConnectException: "
    "'Connection refused (Connection refused)'."
)
STACK = "\n-- StackTrace --\njava.io.IOException: boom\n\tat org.apache.Foo.bar(Foo.java:1)\n"


@pytest.mark.parametrize(
    ("completed", "expected"),
    [
        pytest.param(_completed("snapshot", 1, REFUSED), CassandraUnreachable, id="refused-exit-1"),
        pytest.param(_completed("version", 2, REFUSED), CassandraUnreachable, id="refused-exit-2"),
        pytest.param(
            _completed("snapshot", 2, "error: Snapshot t already exists." + STACK),
            SnapshotAlreadyExists,
            id="tag-exists",
        ),
        pytest.param(
            _completed("snapshot", 1, "nodetool: Keyspace nope does not exist\nSee 'nodetool"),
            UnknownKeyspace,
            id="unknown-keyspace",
        ),
        pytest.param(
            _completed("clearsnapshot", 2, "error: boom" + STACK), NodetoolFailed, id="other"
        ),
        pytest.param(
            _completed("clearsnapshot", 1, "Keyspace nope does not exist"),
            NodetoolFailed,
            id="unknown-keyspace-outside-snapshot",
        ),
    ],
)
def test_failures_are_told_apart_by_what_nodetool_prints(
    completed: CompletedCommand, expected: type[Exception]
) -> None:
    assert type(failure_for(completed, jmx_endpoint="127.0.0.1:7299")) is expected


def test_unreachable_cassandra_message_names_the_jmx_endpoint() -> None:
    error = failure_for(_completed("snapshot", 1, REFUSED), jmx_endpoint="127.0.0.1:7299")

    assert str(error) == f"Cassandra is not reachable over JMX at 127.0.0.1:7299: {REFUSED}"


def test_other_failure_message_has_exit_code_and_output_without_stack_trace() -> None:
    error = failure_for(_completed("snapshot", 2, "error: disk full" + STACK), jmx_endpoint="x")

    assert str(error) == "nodetool snapshot failed with exit code 2: error: disk full"


def test_silent_failure_says_nodetool_printed_nothing() -> None:
    error = failure_for(_completed("snapshot", 137, ""), jmx_endpoint="x")

    assert str(error) == "nodetool snapshot failed with exit code 137: it printed nothing"


def test_summary_keeps_long_output_bounded() -> None:
    assert len(summarize_output("e" * 10_000)) == 2000


async def test_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"

    with pytest.raises(NodetoolTimedOut) as caught:
        await run_command(
            ["/bin/sh", "-c", script], timeout_seconds=0.5, env={"PATH": os.environ["PATH"]}
        )

    assert "did not finish within 0.5 s and was stopped" in str(caught.value)
    assert _is_gone(int(pid_file.read_text()))


def _is_gone(pid: int) -> bool:
    """A killed process is either reaped already or a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(") ", 1)[1].startswith("Z")


async def test_missing_executable_is_reported_with_its_path(tmp_path: Path) -> None:
    nodetool = Nodetool(NodetoolSettings(executable=str(tmp_path / "no-nodetool")))

    with pytest.raises(NodetoolNotFound) as caught:
        await nodetool.version()

    assert str(tmp_path / "no-nodetool") in str(caught.value)


async def test_version_reads_the_release_from_nodetool(tmp_path: Path) -> None:
    launcher = fake_nodetool.install_launcher(tmp_path)
    nodetool = Nodetool(NodetoolSettings(executable=str(launcher)), environ={})

    assert await nodetool.version() == "ReleaseVersion: 5.0.4"


async def test_down_cassandra_raises_unreachable(tmp_path: Path) -> None:
    launcher = fake_nodetool.install_launcher(tmp_path)
    settings = NodetoolSettings(executable=str(launcher), jmx_port=7399)
    nodetool = Nodetool(settings, environ={"FAKE_NODETOOL_DOWN": "1"})

    with pytest.raises(CassandraUnreachable) as caught:
        await nodetool.snapshot(tag="t", keyspaces=["ks"])

    assert "Failed to connect to '127.0.0.1:7399'" in str(caught.value)


async def test_nodetool_does_not_see_the_token(tmp_path: Path) -> None:
    probe = tmp_path / "nodetool"
    seen = tmp_path / "env.json"
    probe.write_text(
        f"#!{sys.executable}\nimport json, os\n"
        f"open({str(seen)!r}, 'w').write(json.dumps(dict(os.environ)))\n"
    )
    probe.chmod(0o755)
    nodetool = Nodetool(
        NodetoolSettings(executable=str(probe)), environ={TOKEN_ENV: "s3cret", "LANG": "C"}
    )

    await nodetool.version()

    environment = json.loads(seen.read_text())
    assert TOKEN_ENV not in environment
    assert environment["LANG"] == "C"
