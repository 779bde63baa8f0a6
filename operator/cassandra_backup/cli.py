"""The ``cassandra-backup-operator`` command: ``run``, ``next-runs`` and ``crds``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cassandra_backup import runs, schedule


def _parse_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset or Z")
        return value.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time between the years 1 and 9999, such as "
            "2026-03-28T00:00:00Z") from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _interval_unit(text: str) -> str | None:
    return None if text.lower() in ("null", "none", "") else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cassandra-backup-operator",
        description="Kubernetes operator for Apache Cassandra backups.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the operator")
    namespaces = run.add_mutually_exclusive_group()
    namespaces.add_argument("--namespace", "-n", action="append", default=[],
                            help="watch this namespace (repeatable); default: all")
    namespaces.add_argument("--all-namespaces", "-A", action="store_true",
                            help="watch every namespace (the default)")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                     help="liveness endpoint URL to serve (default %(default)s)")
    run.add_argument("--metrics-port", type=int, default=9090,
                     help="port of the Prometheus /metrics endpoint; 0 turns it off")
    run.add_argument("--metrics-host", default="0.0.0.0", help="address to serve metrics on")
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    run.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG")
    run.add_argument("--opscenter-poll-seconds", type=float, default=60.0,
                     help="how often OpsCenter schedules and backups are mirrored")
    run.add_argument("--opscenter-timeout-seconds", type=float, default=30.0,
                     help="how long one OpsCenter request may take (default %(default)s)")
    run.add_argument("--max-concurrent-nodes", type=int, default=runs.DEFAULT_CONCURRENCY,
                     help="nodes one run asks at the same time (default %(default)s)")

    preview = commands.add_parser(
        "next-runs", help="print the next ticks of a schedule, in RFC 3339 UTC")
    preview.add_argument("--first-run-date", required=True, help="YYYY-MM-DD")
    preview.add_argument("--first-run-time", required=True, help="hh:mm:ss, local")
    preview.add_argument("--timezone", default="GMT", help="IANA zone (default GMT)")
    preview.add_argument("--interval", type=int, required=True, help=">= 1, or -1 for once")
    preview.add_argument("--interval-unit", type=_interval_unit, default=None,
                         help="minutes | hours | days | weeks | null")
    preview.add_argument("--count", type=_positive, default=5, help="how many (default 5)")
    preview.add_argument("--after", type=_parse_instant, default=None,
                         help="start after this RFC 3339 time (default: now)")

    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions")
    crds.add_argument("--output-dir", "-o", type=Path, default=None,
                      help="write one file per CRD here; default: print to stdout")
    return parser


def _next_runs(args: argparse.Namespace) -> int:
    after = args.after or datetime.now(UTC)
    try:
        lines = schedule.preview_lines(
            first_run_date=args.first_run_date, first_run_time=args.first_run_time,
            timezone=args.timezone, interval=args.interval, interval_unit=args.interval_unit,
            count=args.count, after=after)
    except schedule.InvalidSchedule as exc:
        print(f"cassandra-backup-operator next-runs: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    if not lines:
        print(f"cassandra-backup-operator next-runs: no ticks after {after:%Y-%m-%dT%H:%M:%SZ}",
              file=sys.stderr)
    return 0


def _crds(args: argparse.Namespace) -> int:
    from cassandra_backup import crds

    if args.output_dir is None:
        sys.stdout.write("---\n".join(crds.rendered().values()))
        return 0
    if args.output_dir.exists() and not args.output_dir.is_dir():
        print(f"cassandra-backup-operator crds: --output-dir: {args.output_dir} is not a folder",
              file=sys.stderr)
        return 2
    for path in crds.write(args.output_dir):
        print(path)
    return 0


def _run(args: argparse.Namespace) -> int:
    from cassandra_backup import handlers

    return handlers.run_operator(
        namespaces=args.namespace, liveness=args.liveness, metrics_host=args.metrics_host,
        metrics_port=args.metrics_port, log_format=args.log_format, verbose=args.verbose,
        opscenter_poll_seconds=args.opscenter_poll_seconds,
        opscenter_timeout_seconds=args.opscenter_timeout_seconds,
        max_concurrent_nodes=args.max_concurrent_nodes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "next-runs":
        return _next_runs(args)
    if args.command == "crds":
        return _crds(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
