"""Prometheus metrics of the operator, labelled by namespace and schedule.

A run that no schedule made is counted under ``schedule=""``. A PartiallyFailed run
counts as a partial failure *and* as a failure: an alert on failures must not miss a
backup that left some nodes without a snapshot.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LABELS = ("namespace", "schedule")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.attempts = Counter("cassandra_backup_run_attempts_total",
                                "Runs started.", LABELS, registry=self.registry)
        self.successes = Counter("cassandra_backup_run_successes_total",
                                 "Runs that succeeded on every node.", LABELS,
                                 registry=self.registry)
        self.partial_failures = Counter("cassandra_backup_run_partial_failures_total",
                                        "Runs that failed on some nodes only.", LABELS,
                                        registry=self.registry)
        self.failures = Counter("cassandra_backup_run_failures_total",
                                "Runs that failed on any node (partial failures included).",
                                LABELS, registry=self.registry)
        self.duration = Histogram("cassandra_backup_run_duration_seconds",
                                  "Wall time of a run, start to last node.", LABELS,
                                  buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
                                  registry=self.registry)
        self.last_success = Gauge("cassandra_backup_last_success_timestamp_seconds",
                                  "Completion time of the newest fully successful run.",
                                  LABELS, registry=self.registry)
        self.next_run = Gauge("cassandra_backup_next_run_timestamp_seconds",
                              "Next scheduled tick.", LABELS, registry=self.registry)

    def run_started(self, *, namespace: str, schedule: str) -> None:
        self.attempts.labels(namespace, schedule).inc()

    def run_finished(self, *, namespace: str, schedule: str, phase: str, seconds: float,
                     completed: datetime) -> None:
        labels = (namespace, schedule)
        self.duration.labels(*labels).observe(seconds)
        if phase == "Succeeded":
            self.successes.labels(*labels).inc()
            self.last_success.labels(*labels).set(completed.timestamp())
            return
        if phase == "PartiallyFailed":
            self.partial_failures.labels(*labels).inc()
        self.failures.labels(*labels).inc()

    def next_tick(self, *, namespace: str, schedule: str, tick: datetime | None) -> None:
        gauge = self.next_run.labels(namespace, schedule)
        gauge.set(tick.timestamp() if tick is not None else 0)

    def serve(self, *, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
