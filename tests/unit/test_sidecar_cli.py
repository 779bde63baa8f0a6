"""The sidecar's command line: defaults, the required token, and how it logs."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest

from cassandra_backup.sidecar.nodetool import TOKEN_ENV, NodetoolSettings
from cassandra_backup.sidecar.server import JsonLogFormatter, main, parse_settings


def test_defaults_match_a_cassandra_pod() -> None:
    settings = parse_settings([], {TOKEN_ENV: "t0ken"})

    assert settings.host == "0.0.0.0"
    assert settings.port == 9105
    assert settings.nodetool == NodetoolSettings(
        executable="nodetool", jmx_host="127.0.0.1", jmx_port=7199, timeout_seconds=600.0
    )
    assert settings.data_dirs == (Path("/var/lib/cassandra/data"),)
    assert settings.tls_cert is None and settings.tls_key is None
    assert settings.log_format == "text"


def test_every_flag_is_read() -> None:
    settings = parse_settings(
        [
            "--host=127.0.0.3",
            "--port=9200",
            "--nodetool=/opt/cassandra/bin/nodetool",
            "--jmx-host=127.0.0.4",
            "--jmx-port=7299",
            "--data-dir=/data1",
            "--data-dir=/data2",
            "--nodetool-timeout=90",
            "--log-format=json",
        ],
        {TOKEN_ENV: "t0ken"},
    )

    assert (settings.host, settings.port) == ("127.0.0.3", 9200)
    assert settings.nodetool == NodetoolSettings(
        executable="/opt/cassandra/bin/nodetool",
        jmx_host="127.0.0.4",
        jmx_port=7299,
        timeout_seconds=90.0,
    )
    assert settings.data_dirs == (Path("/data1"), Path("/data2"))
    assert settings.log_format == "json"


def test_token_is_read_from_the_file_without_its_newline(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-secret\n")

    settings = parse_settings(["--token-file", str(token_file)], {TOKEN_ENV: "from-env"})

    assert settings.token == "from-a-secret"


def test_token_comes_from_the_environment_without_a_file() -> None:
    assert parse_settings([], {TOKEN_ENV: "from-env"}).token == "from-env"


def test_token_is_not_in_the_settings_repr() -> None:
    assert "t0ken-value" not in repr(parse_settings([], {TOKEN_ENV: "t0ken-value"}))


def test_start_without_a_token_is_refused_with_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_settings([], {})

    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "a bearer token is required: pass --token-file PATH or set " in error
    assert TOKEN_ENV in error


def test_blank_token_in_the_environment_counts_as_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_settings([], {TOKEN_ENV: "  "})

    assert "a bearer token is required" in capsys.readouterr().err


def test_empty_token_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")

    with pytest.raises(SystemExit):
        parse_settings(["--token-file", str(token_file)], {})

    assert f"--token-file {token_file} is empty" in capsys.readouterr().err


def test_missing_token_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--token-file", str(tmp_path / "absent")], {TOKEN_ENV: "x"})

    assert f"cannot read --token-file {tmp_path / 'absent'}" in capsys.readouterr().err


def test_certificate_without_key_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--tls-cert", "/etc/tls/tls.crt"], {TOKEN_ENV: "x"})

    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "error"),
    [
        pytest.param("--port=70000", "'70000' is not between 0 and 65535", id="port-range"),
        pytest.param("--nodetool-timeout=0", "'0' must be more than zero seconds", id="timeout"),
        pytest.param("--log-format=xml", "invalid choice: 'xml'", id="log-format"),
    ],
)
def test_bad_values_are_refused_naming_the_flag(
    flag: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_settings([flag], {TOKEN_ENV: "x"})

    assert error in capsys.readouterr().err


def _main_keeping_logging(argv: list[str]) -> int:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return main(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_main_with_an_unloadable_certificate_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tls.crt").write_text("not a certificate")
    (tmp_path / "tls.key").write_text("not a key")
    monkeypatch.setenv(TOKEN_ENV, "x")

    code = _main_keeping_logging(
        [
            "--host=127.0.0.1",
            f"--tls-cert={tmp_path / 'tls.crt'}",
            f"--tls-key={tmp_path / 'tls.key'}",
        ]
    )

    assert code == 2
    assert "cannot load the TLS certificate pair" in capsys.readouterr().err


def test_main_on_a_port_in_use_exits_1_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code = _main_keeping_logging(
            ["--host=127.0.0.1", f"--port={port}", f"--data-dir={tmp_path}"]
        )

    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_json_log_lines_carry_level_logger_and_message() -> None:
    record = logging.LogRecord(
        "cassandra_backup.sidecar", logging.INFO, __file__, 1, "snapshot %s taken", ("t",), None
    )
    record.created = 1700000000.25

    line = json.loads(JsonLogFormatter().format(record))

    assert line == {
        "time": "2023-11-14T22:13:20.250Z",
        "level": "INFO",
        "logger": "cassandra_backup.sidecar",
        "message": "snapshot t taken",
    }
