"""Running `nodetool` against the local Cassandra node, and reading what went wrong.

Commands are argument lists handed to the operating system directly, never a shell
string, so no tag or keyspace can be read as shell syntax. Keyspaces follow a `--` so
that none can be read as a nodetool option either (the API already refuses such names;
this is the second lock on the same door).

nodetool tells its failures apart only in its text: a refused JMX connection, an
existing tag and an unknown keyspace all end in a non-zero exit code, and the code
differs between Cassandra versions. So failures are classified by the words nodetool
prints, and anything unrecognised is passed on with its output.

Each nodetool runs in its own session so that a timeout stops the whole process group
(the JVM and any wrapper script), not just the first process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

TOKEN_ENV: Final = "CASSANDRA_BACKUP_SIDECAR_TOKEN"  # noqa: S105 (a variable name)

_UNREACHABLE_MARKERS: Final = (
    "failed to connect",
    "connection refused",
    "connectexception",
    "no route to host",
    "unknownhostexception",
)
_EXISTS_MARKER: Final = "already exists"
_UNKNOWN_KEYSPACE_MARKER: Final = "does not exist"
_MAX_ERROR_CHARS: Final = 2000


@dataclass(frozen=True, kw_only=True)
class NodetoolSettings:
    """Where nodetool is and which JMX endpoint it talks to."""

    executable: str = "nodetool"
    jmx_host: str = "127.0.0.1"
    jmx_port: int = 7199
    timeout_seconds: float = 600.0


def _connection_args(settings: NodetoolSettings) -> list[str]:
    return [settings.executable, "-h", settings.jmx_host, "-p", str(settings.jmx_port)]


def snapshot_command(
    settings: NodetoolSettings, *, tag: str, keyspaces: Sequence[str]
) -> list[str]:
    """`nodetool snapshot -t TAG -- ks...`; without keyspaces, every keyspace (and no `--`)."""
    command = [*_connection_args(settings), "snapshot", "-t", tag]
    if keyspaces:
        command += ["--", *keyspaces]
    return command


def clear_snapshot_command(settings: NodetoolSettings, *, tag: str) -> list[str]:
    """`nodetool clearsnapshot -t TAG`, which clears the tag in every keyspace."""
    return [*_connection_args(settings), "clearsnapshot", "-t", tag]


def version_command(settings: NodetoolSettings) -> list[str]:
    """`nodetool version`: the cheapest command that needs a live JMX connection."""
    return [*_connection_args(settings), "version"]


@dataclass(frozen=True, kw_only=True)
class CompletedCommand:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


class NodetoolError(Exception):
    """A nodetool command did not do what was asked; the message is meant for a person."""


class NodetoolNotFound(NodetoolError):
    pass


class NodetoolTimedOut(NodetoolError):
    pass


class CassandraUnreachable(NodetoolError):
    pass


class SnapshotAlreadyExists(NodetoolError):
    pass


class UnknownKeyspace(NodetoolError):
    pass


class NodetoolFailed(NodetoolError):
    pass


def summarize_output(text: str) -> str:
    """The part of nodetool's output a person needs: no Java stack trace, bounded length."""
    head, _, _ = text.partition("-- StackTrace --")
    lines = [line.strip() for line in head.splitlines() if line.strip()]
    summary = " ".join(line for line in lines if not line.startswith("See 'nodetool help"))
    if len(summary) > _MAX_ERROR_CHARS:
        summary = summary[: _MAX_ERROR_CHARS - 3] + "..."
    return summary


def failure_for(completed: CompletedCommand, *, jmx_endpoint: str) -> NodetoolError:
    """Turn a non-zero exit into the error that says what it means for the caller."""
    output = summarize_output(f"{completed.stderr}\n{completed.stdout}")
    lowered = output.lower()
    subcommand = _subcommand(completed.args)

    if any(marker in lowered for marker in _UNREACHABLE_MARKERS):
        return CassandraUnreachable(
            f"Cassandra is not reachable over JMX at {jmx_endpoint}: {output}"
        )
    if subcommand == "snapshot" and _EXISTS_MARKER in lowered:
        return SnapshotAlreadyExists(output)
    if subcommand == "snapshot" and _UNKNOWN_KEYSPACE_MARKER in lowered:
        return UnknownKeyspace(output)
    return NodetoolFailed(
        f"nodetool {subcommand} failed with exit code {completed.returncode}: "
        f"{output or 'it printed nothing'}"
    )


def _subcommand(args: Sequence[str]) -> str:
    # The connection options come first and each takes one value; the subcommand follows.
    return args[5] if len(args) > 5 else "?"


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The sidecar's environment without its own bearer token: nodetool has no use for it."""
    return {key: value for key, value in environ.items() if key != TOKEN_ENV}


async def run_command(
    args: Sequence[str], *, timeout_seconds: float, env: Mapping[str, str]
) -> CompletedCommand:
    """Run one command to completion, or stop its whole process group at the timeout."""
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise NodetoolNotFound(
            f"nodetool executable {args[0]!r} was not found; set --nodetool to its path"
        ) from exc
    except PermissionError as exc:
        raise NodetoolNotFound(f"nodetool executable {args[0]!r} cannot be run: {exc}") from exc

    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_seconds)
    except TimeoutError:
        await _stop(process)
        raise NodetoolTimedOut(
            f"nodetool {_subcommand(args)} did not finish within {timeout_seconds:g} s "
            "and was stopped"
        ) from None
    except BaseException:
        await _stop(process)
        raise

    return CompletedCommand(
        args=list(args),
        returncode=process.returncode if process.returncode is not None else -1,
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


class Nodetool:
    """The nodetool commands the sidecar needs, with failures raised as `NodetoolError`s."""

    def __init__(
        self, settings: NodetoolSettings, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self._settings = settings
        self._env = child_environment(os.environ if environ is None else environ)
        self.jmx_endpoint = f"{settings.jmx_host}:{settings.jmx_port}"

    async def snapshot(self, *, tag: str, keyspaces: Sequence[str]) -> None:
        await self._run(snapshot_command(self._settings, tag=tag, keyspaces=keyspaces))

    async def clear_snapshot(self, *, tag: str) -> None:
        await self._run(clear_snapshot_command(self._settings, tag=tag))

    async def version(self, *, timeout_seconds: float | None = None) -> str:
        completed = await self._run(version_command(self._settings), timeout_seconds)
        return completed.stdout.strip()

    async def _run(self, args: list[str], timeout_seconds: float | None = None) -> CompletedCommand:
        timeout = self._settings.timeout_seconds if timeout_seconds is None else timeout_seconds
        log.debug("running %s", args)
        completed = await run_command(args, timeout_seconds=timeout, env=self._env)
        if completed.returncode != 0:
            raise failure_for(completed, jmx_endpoint=self.jmx_endpoint)
        return completed
