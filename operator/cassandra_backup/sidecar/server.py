"""The `cassandra-backup-sidecar` command: command line, aiohttp application and serving.

This module is wiring. Handlers read a request, call the snapshot service, and write an
answer; every failure, expected or not, leaves as a JSON `{"error": ...}` body with the
status the API promises, so a client never has to parse an HTML error page.

The bearer token is held only in the settings (hidden from their repr) and compared in
constant time; it is never logged, never echoed in an answer, and never handed to
nodetool's environment.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hmac
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cassandra_backup import __version__
from cassandra_backup.sidecar.api import (
    HEALTHZ_PATH,
    OPENAPI_PATH,
    READYZ_PATH,
    SNAPSHOTS_PATH,
    ErrorBody,
    ProbeStatus,
    SnapshotInfo,
    SnapshotList,
    SnapshotRequest,
    SnapshotResult,
    openapi_document,
    snapshot_tag_adapter,
)
from cassandra_backup.sidecar.inventory import SnapshotOnDisk
from cassandra_backup.sidecar.nodetool import (
    TOKEN_ENV,
    CassandraUnreachable,
    Nodetool,
    NodetoolError,
    NodetoolSettings,
    NodetoolTimedOut,
    SnapshotAlreadyExists,
    UnknownKeyspace,
)
from cassandra_backup.sidecar.service import (
    ReadinessProbe,
    SnapshotConflict,
    SnapshotNotFound,
    SnapshotService,
)

log = logging.getLogger("cassandra_backup.sidecar")

DEFAULT_PORT: Final = 9105
DEFAULT_DATA_DIR: Final = Path("/var/lib/cassandra/data")
READINESS_TTL_SECONDS: Final = 5.0
# A kubelet gives up on a probe long before this; the bound only stops a hung JVM from
# holding the readiness lock for the full nodetool timeout.
READINESS_TIMEOUT_SECONDS: Final = 30.0
PUBLIC_PATHS: Final = frozenset({HEALTHZ_PATH, READYZ_PATH, OPENAPI_PATH})
AUTH_CHALLENGE: Final = 'Bearer realm="cassandra-backup-sidecar"'

LogFormat = Literal["text", "json"]


@dataclass(frozen=True, kw_only=True)
class SidecarSettings:
    """Everything the command line decides."""

    token: str = field(repr=False)
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    nodetool: NodetoolSettings = field(default_factory=NodetoolSettings)
    data_dirs: tuple[Path, ...] = (DEFAULT_DATA_DIR,)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_format: LogFormat = "text"
    readiness_ttl_seconds: float = READINESS_TTL_SECONDS


class ApiError(Exception):
    """An answer other than success, raised from a handler and written as JSON."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


# Checked in order, so a subclass must come before its base.
_STATUS_BY_ERROR: Final[tuple[tuple[type[Exception], int], ...]] = (
    (SnapshotConflict, 409),
    (SnapshotAlreadyExists, 409),
    (SnapshotNotFound, 404),
    (UnknownKeyspace, 400),
    (CassandraUnreachable, 503),
    (NodetoolTimedOut, 504),
    (NodetoolError, 500),
)

SERVICE_KEY: Final = web.AppKey("service", SnapshotService)
PROBE_KEY: Final = web.AppKey("readiness", ReadinessProbe)
OPENAPI_KEY: Final = web.AppKey("openapi", dict[str, Any])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- command line -------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than zero seconds")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cassandra-backup-sidecar",
        description="HTTP agent that takes, lists and clears Cassandra snapshots on this node.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help="port to listen on (0: any free one)"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help=f"file holding the bearer token clients must send (else env {TOKEN_ENV})",
    )
    parser.add_argument("--nodetool", default="nodetool", help="nodetool executable")
    parser.add_argument("--jmx-host", default="127.0.0.1", help="Cassandra's JMX host")
    parser.add_argument("--jmx-port", type=_port, default=7199, help="Cassandra's JMX port")
    parser.add_argument(
        "--data-dir",
        dest="data_dirs",
        type=Path,
        action="append",
        help=(
            "a Cassandra data directory; repeat for each one, the local system one included "
            f"(default {DEFAULT_DATA_DIR})"
        ),
    )
    parser.add_argument(
        "--nodetool-timeout",
        type=_positive_seconds,
        default=600.0,
        help="seconds a nodetool command may run before it is stopped",
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) to serve HTTPS")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    return parser


def parse_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> SidecarSettings:
    """Settings from the command line and environment; exits with a message when invalid."""
    parser = build_parser()
    args = parser.parse_args(argv)

    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together: give both or neither")

    return SidecarSettings(
        token=_read_token(parser, args.token_file, environ),
        host=args.host,
        port=args.port,
        nodetool=NodetoolSettings(
            executable=args.nodetool,
            jmx_host=args.jmx_host,
            jmx_port=args.jmx_port,
            timeout_seconds=args.nodetool_timeout,
        ),
        data_dirs=tuple(args.data_dirs or [DEFAULT_DATA_DIR]),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        log_format=args.log_format,
    )


def _read_token(
    parser: argparse.ArgumentParser, token_file: Path | None, environ: Mapping[str, str]
) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            parser.error(f"cannot read --token-file {token_file}: {exc.strerror}")
        except UnicodeDecodeError:
            parser.error(f"--token-file {token_file} is not UTF-8 text")
        if not token:
            parser.error(f"--token-file {token_file} is empty; it must hold the bearer token")
        return token

    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        parser.error(
            f"a bearer token is required: pass --token-file PATH or set {TOKEN_ENV}; "
            "the sidecar never serves snapshots without one"
        )
    return token


# --- application --------------------------------------------------------------------


def create_app(settings: SidecarSettings, *, nodetool: Nodetool | None = None) -> web.Application:
    """The aiohttp application; `nodetool` is built from the settings unless given."""
    nodetool = nodetool or Nodetool(settings.nodetool)
    readiness_check = functools.partial(
        nodetool.version,
        timeout_seconds=min(settings.nodetool.timeout_seconds, READINESS_TIMEOUT_SECONDS),
    )

    app = web.Application(
        middlewares=[_errors_as_json, _bearer_token_required(settings.token)],
    )
    app[SERVICE_KEY] = SnapshotService(nodetool=nodetool, data_dirs=settings.data_dirs)
    app[PROBE_KEY] = ReadinessProbe(readiness_check, ttl_seconds=settings.readiness_ttl_seconds)
    app[OPENAPI_KEY] = openapi_document()
    app.router.add_get(HEALTHZ_PATH, _healthz)
    app.router.add_get(READYZ_PATH, _readyz)
    app.router.add_get(OPENAPI_PATH, _openapi)
    app.router.add_post(SNAPSHOTS_PATH, _take_snapshot)
    app.router.add_get(SNAPSHOTS_PATH, _list_snapshots)
    app.router.add_delete(f"{SNAPSHOTS_PATH}/{{tag}}", _clear_snapshot)
    return app


def _json(model: ProbeStatus | SnapshotResult | SnapshotList, *, status: int) -> web.Response:
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json"
    )


def _error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=ErrorBody(error=message).model_dump_json(),
        content_type="application/json",
        headers=headers,
    )


async def _healthz(request: web.Request) -> web.Response:
    return _json(ProbeStatus(status="ok"), status=200)


async def _readyz(request: web.Request) -> web.Response:
    readiness = await request.app[PROBE_KEY].current()
    if not readiness.ready:
        return _error_response(503, readiness.reason)
    return _json(ProbeStatus(status="ready"), status=200)


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


async def _take_snapshot(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        wanted = SnapshotRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(400, describe_validation_error(exc)) from None

    outcome = await request.app[SERVICE_KEY].take(tag=wanted.tag, keyspaces=wanted.keyspaces)

    result = SnapshotResult(**_info_fields(outcome.snapshot), created=outcome.created)
    return _json(result, status=201 if outcome.created else 200)


async def _list_snapshots(request: web.Request) -> web.Response:
    snapshots = await request.app[SERVICE_KEY].snapshots()
    listing = SnapshotList(snapshots=[SnapshotInfo(**_info_fields(s)) for s in snapshots])
    return _json(listing, status=200)


async def _clear_snapshot(request: web.Request) -> web.Response:
    tag = request.match_info["tag"]
    try:
        snapshot_tag_adapter.validate_python(tag)
    except ValidationError as exc:
        raise ApiError(400, describe_validation_error(exc, location="tag")) from None

    await request.app[SERVICE_KEY].clear(tag=tag)
    return web.Response(status=204)


def _info_fields(snapshot: SnapshotOnDisk) -> dict[str, Any]:
    return {
        "tag": snapshot.tag,
        "keyspaces": snapshot.keyspaces,
        "size_bytes": snapshot.size_bytes,
        "keyspace_sizes": dict(snapshot.keyspace_sizes),
        "created_at": snapshot.created_at,
    }


def describe_validation_error(exc: ValidationError, *, location: str = "") -> str:
    """One sentence per problem, naming the field and the value that was refused."""
    errors = exc.errors()
    invalid_json = [error for error in errors if error["type"] == "json_invalid"]
    if invalid_json:
        return f"request body is not valid JSON: {invalid_json[0]['msg']}"
    return "; ".join(_describe_one(error, location) for error in errors)


def _describe_one(error: ErrorDetails, location: str) -> str:
    where = ".".join(str(part) for part in error["loc"]) or location or "request body"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in {"string_pattern_mismatch", "value_error"}:
        shown = repr(error["input"])
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"{where} {shown}: {message}"
    return f"{where}: {message}"


# --- middlewares --------------------------------------------------------------------


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, str(exc), exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            key: value
            for key, value in exc.headers.items()
            if key.lower() not in {"content-type", "content-length"}
        }
        return _error_response(exc.status, _http_error_message(request, exc), headers)
    except Exception as exc:
        for error_type, status in _STATUS_BY_ERROR:
            if isinstance(exc, error_type):
                if status >= 500:
                    log.warning("%s %s failed: %s", request.method, request.path, exc)
                return _error_response(status, _with_advice(exc))
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return _error_response(500, "unexpected error in the sidecar; its log has the details")


def _with_advice(exc: Exception) -> str:
    if isinstance(exc, NodetoolTimedOut):
        return (
            f"{exc}; Cassandra may still finish the work, so list the snapshots before "
            "retrying, or raise --nodetool-timeout"
        )
    return str(exc)


def _http_error_message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return f"no such endpoint: {request.method} {request.path}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return "request body is too large"
    return exc.reason


def _bearer_token_required(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def bearer_token_required(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)

        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(errors="replace"), expected
        ):
            raise ApiError(
                401,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' with the "
                "sidecar's token",
                headers={"WWW-Authenticate": AUTH_CHALLENGE},
            )
        return await handler(request)

    return bearer_token_required


# --- serving ------------------------------------------------------------------------


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, for log collectors that parse fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class MalformedRequestFilter(logging.Filter):
    """Logs a request aiohttp could not parse in one line, without its bytes.

    aiohttp's parser error quotes the start of the offending header, which may be an
    Authorization header: the token must never reach a log line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = "refused a malformed HTTP request (%s, HTTP %s)"
            record.args = (type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(log_format: LogFormat) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())


def ssl_context_for(settings: SidecarSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def serve(
    app: web.Application, *, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> None:
    """Serve until SIGINT or SIGTERM, then finish the requests in flight."""
    runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access"))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        scheme = "https" if ssl_context else "http"
        for address in runner.addresses:
            bound_host, bound_port = address[0], address[1]
            log.info("listening on %s://%s:%d", scheme, bound_host, bound_port)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv, os.environ)
    configure_logging(settings.log_format)

    try:
        ssl_context = ssl_context_for(settings)
    except (OSError, ssl.SSLError) as exc:
        log.error(
            "cannot load the TLS certificate pair %s, %s: %s",
            settings.tls_cert,
            settings.tls_key,
            exc,
        )
        return 2
    for data_dir in settings.data_dirs:
        if not data_dir.is_dir():
            log.warning("data directory %s does not exist; no snapshot under it is seen", data_dir)
    log.info(
        "nodetool %s against JMX %s:%d, data directories %s",
        settings.nodetool.executable,
        settings.nodetool.jmx_host,
        settings.nodetool.jmx_port,
        ", ".join(str(path) for path in settings.data_dirs),
    )

    app = create_app(settings)
    try:
        asyncio.run(serve(app, host=settings.host, port=settings.port, ssl_context=ssl_context))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    return 0
