"""``cassandra-backup-operator next-runs``: a schedule preview from the command line."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

CONSOLE_SCRIPT = Path(sys.executable).with_name("cassandra-backup-operator")

BERLIN_SPRING = shlex.split(
    "--first-run-date 2026-03-28 --first-run-time 02:30:00 --timezone Europe/Berlin "
    "--interval 1 --interval-unit days"
)


def next_runs(*arguments: str, console_script: bool = False) -> subprocess.CompletedProcess[str]:
    command = (
        [str(CONSOLE_SCRIPT)] if console_script else [sys.executable, "-m", "cassandra_backup.cli"]
    )
    return subprocess.run(
        [*command, "next-runs", *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    "console_script",
    [
        pytest.param(False, id="python-m"),
        pytest.param(True, id="console-script"),
    ],
)
def test_prints_the_design_example_across_the_spring_change(console_script: bool) -> None:
    result = next_runs(
        *BERLIN_SPRING,
        "--count",
        "3",
        "--after",
        "2026-03-01T00:00:00Z",
        console_script=console_script,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:30:00Z",
        "2026-03-30T00:30:00Z",
    ]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param(
            [*BERLIN_SPRING, "--count", "2", "--after", "2026-03-29T01:30:00Z"],
            ["2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"],
            id="after-a-tick-excludes-that-tick",
        ),
        pytest.param(
            [*BERLIN_SPRING, "--count", "1", "--after", "2026-03-29T03:10:00+02:00"],
            ["2026-03-29T01:30:00Z"],
            id="after-with-an-offset",
        ),
        pytest.param(
            shlex.split(
                "--first-run-date 2012-05-03 --first-run-time 18:00:00 --timezone GMT "
                "--interval 1 --interval-unit minutes --count 2 --after 2026-07-01T12:34:56Z"
            ),
            ["2026-07-01T12:35:00Z", "2026-07-01T12:36:00Z"],
            id="every-minute-since-2012",
        ),
        pytest.param(
            shlex.split(
                "--first-run-date 2026-10-31 --first-run-time 01:30:00 --timezone US/Eastern "
                "--interval 1 --interval-unit weeks --count 2 --after 2026-10-01T00:00:00Z"
            ),
            ["2026-10-31T05:30:00Z", "2026-11-07T06:30:00Z"],
            id="eastern-weekly-into-winter-time",
        ),
        pytest.param(
            shlex.split(
                "--first-run-date 2030-01-01 --first-run-time 00:00:00 --timezone GMT "
                "--interval -1 --count 3 --after 2026-01-01T00:00:00Z"
            ),
            ["2030-01-01T00:00:00Z"],
            id="one-time-job-has-one-line",
        ),
    ],
)
def test_prints_one_rfc3339_utc_line_per_tick(arguments: list[str], expected: list[str]) -> None:
    result = next_runs(*arguments)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        pytest.param("--first-run-date", "2026-3-28", "firstRunDate", id="date"),
        pytest.param("--first-run-time", "2:30", "firstRunTime", id="time"),
        pytest.param("--timezone", "Europe/Atlantis", "timezone", id="zone"),
        pytest.param("--interval", "0", "interval", id="interval"),
        pytest.param("--interval-unit", "fortnights", "intervalUnit", id="unit"),
    ],
)
def test_bad_values_exit_non_zero_naming_the_field(flag: str, value: str, field: str) -> None:
    arguments = list(BERLIN_SPRING)
    arguments[arguments.index(flag) + 1] = value

    result = next_runs(*arguments, "--count", "3", "--after", "2026-03-01T00:00:00Z")

    assert result.returncode != 0
    assert result.stdout == ""
    assert f"{field}: " in result.stderr


def test_a_one_time_job_in_the_past_says_there_are_no_ticks() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cassandra_backup.cli", "next-runs", "--first-run-date",
         "2026-03-28", "--first-run-time", "02:30:00", "--interval", "-1",
         "--after", "2026-04-01T00:00:00Z"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "cassandra-backup-operator next-runs: no ticks after 2026-04-01T00:00:00Z")
