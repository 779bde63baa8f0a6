"""Pydantic models of both custom resources: the one source of truth.

The CRD schemas in ``crds/`` are generated from these models (see ``crds.py``), so a
field, its description, its pattern and its admission rule are written once, here.
Admission rules that a JSON schema cannot say are CEL expressions attached with
``cel(...)``; they end up as ``x-kubernetes-validations`` on the same node.

Spec fields mirror OpsCenter's JobSchedule one to one, in camelCase; ``opscenter``
translates them to the wire names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "backups.cassandra.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
SCHEDULE_LABEL = f"{GROUP}/schedule"
CLUSTER_LABEL = f"{GROUP}/cluster"
KEYSPACE_LABEL_PREFIX = f"keyspace.{GROUP}/"
SCHEDULED_AT_ANNOTATION = f"{GROUP}/scheduled-at"

KEYSPACE_PATTERN = r"^[A-Za-z0-9_]{1,48}$"
TAG_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"
DNS_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
ENDPOINT_PATTERN = r"^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}$|^\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5}$"
# A schedule's runs are named "<schedule>-YYYYMMDD-HHMM" and carry the schedule's
# name as a label value, which may hold at most 63 characters.
MAX_SCHEDULE_NAME = 63 - len("-YYYYMMDD-HHMM")

IntervalUnit = Literal["minutes", "hours", "days", "weeks"]
RunPhase = Literal["Pending", "Running", "Succeeded", "PartiallyFailed", "Failed"]
NodePhase = Literal["Pending", "Running", "Succeeded", "Failed"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "PartiallyFailed", "Failed"})


def cel(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """Attach CEL admission rules: ``(rule, message)`` or ``(rule, message, fieldPath)``."""
    validations = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) == 3:
            entry["fieldPath"] = rule[2]
        validations.append(entry)
    return {"x-kubernetes-validations": validations}


class Model(BaseModel):
    """Base of every model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    def wire(self) -> dict[str, Any]:
        """The JSON a resource holds for this model, unset fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


class SecretKeyRef(Model):
    """A key inside a Secret in the resource's own namespace."""

    name: str = Field(description="Name of the Secret, in the resource's namespace.",
                      pattern=DNS_NAME_PATTERN, max_length=253)
    key: str = Field(description="Key inside the Secret whose value is used.",
                     pattern=r"^[-._a-zA-Z0-9]{1,253}$")


class SecretRef(Model):
    """A whole Secret in the resource's own namespace."""

    name: str = Field(description="Name of the Secret, in the resource's namespace.",
                      pattern=DNS_NAME_PATTERN, max_length=253)


class LabelSelectorRequirement(Model):
    """One expression of a Kubernetes label selector."""

    key: str = Field(description="The label key the selector applies to.", min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist.")
    values: list[str] = Field(
        default_factory=list,
        description="Values for In and NotIn; must be empty for Exists and DoesNotExist.")


class LabelSelector(Model):
    """A Kubernetes label selector, as in a Deployment's ``spec.selector``."""

    matchLabels: dict[str, str] = Field(
        default_factory=dict, description="Labels a pod must carry, all of them.")
    matchExpressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, description="Expressions a pod's labels must satisfy, all of them.")


class SidecarBackend(Model):
    """Snapshots taken through the node sidecars this project ships."""

    model_config = ConfigDict(json_schema_extra=cel(
        ("has(self.podSelector) != (has(self.endpoints) && size(self.endpoints) > 0)",
         "set exactly one of podSelector and endpoints"),
    ))

    podSelector: LabelSelector | None = Field(
        default=None,
        description="Cassandra pods in this namespace; each matching pod is one node, reached "
                    "at its pod IP on `port`. A pod that is not Ready is a failed node.")
    endpoints: list[str] = Field(
        default_factory=list, max_length=1000,
        description="Fixed host:port list of sidecars, for Cassandra outside Kubernetes.",
        json_schema_extra={"items": {"type": "string", "pattern": ENDPOINT_PATTERN}})
    port: int = Field(default=9105, ge=1, le=65535,
                      description="Sidecar port on each pod selected by podSelector.")
    tokenSecret: SecretKeyRef = Field(
        description="Secret key holding the bearer token the sidecars accept.")
    caSecret: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a CA certificate; when set the sidecars are reached "
                    "over HTTPS and their certificates verified against it.")


class OpsCenterBackend(Model):
    """An existing DataStax OpsCenter that runs the schedule itself."""

    url: str = Field(description="Base URL of the OpsCenter API, e.g. https://opscenter:8443.",
                     pattern=r"^https?://[^\s/]+(/[^\s]*)?$", max_length=2048)
    credentialsSecret: SecretRef | None = Field(
        default=None,
        description="Secret with keys `username` and `password` for POST /login; omit when "
                    "OpsCenter authentication is off.")
    caSecret: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the CA certificate that signed "
                                  "OpsCenter's TLS certificate.")


class ClusterRef(Model):
    """Which Cassandra cluster, and how to reach it."""

    model_config = ConfigDict(json_schema_extra=cel(
        ("has(self.sidecars) != has(self.opscenter)",
         "set exactly one backend: sidecars or opscenter"),
    ))

    name: str = Field(
        description="Cluster name: OpsCenter's cluster_id, and the value of the "
                    "backups.cassandra.dev/cluster label.",
        pattern=r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
    sidecars: SidecarBackend | None = Field(
        default=None, description="Use the node snapshot sidecars (the operator schedules).")
    opscenter: OpsCenterBackend | None = Field(
        default=None, description="Use a DataStax OpsCenter (OpsCenter schedules).")

    @property
    def backend(self) -> Literal["sidecars", "opscenter"]:
        return "opscenter" if self.opscenter is not None else "sidecars"


class JobParams(Model):
    """What the job does: OpsCenter's job_params."""

    type: Literal["backup"] = Field(
        default="backup", description="Job type (OpsCenter job_params.type); only `backup`.")
    keyspaces: list[str] = Field(
        default_factory=list, max_length=500,
        description="Keyspaces to back up (OpsCenter job_params.keyspaces); empty means every "
                    "keyspace.",
        json_schema_extra={"items": {"type": "string", "pattern": KEYSPACE_PATTERN}})
    cleanupAge: int | None = Field(
        default=None, ge=1,
        description="Retention (OpsCenter job_params.cleanup_age): runs older than this are "
                    "cleared from every node and removed. Omit to keep backups forever.")
    cleanupAgeUnit: IntervalUnit = Field(
        default="days", description="Unit of cleanupAge (OpsCenter job_params.cleanup_age_unit).")


class BackupScheduleSpec(Model):
    """When to back up which keyspaces: mirrors OpsCenter's JobSchedule."""

    model_config = ConfigDict(json_schema_extra=cel(
        ("self.interval == -1 || self.interval >= 1",
         "interval must be at least 1, or -1 for a one-time job", ".interval"),
        ("self.interval != -1 || !has(self.intervalUnit)",
         "intervalUnit must be null or absent for a one-time job (interval -1)",
         ".intervalUnit"),
        ("self.interval == -1 || has(self.intervalUnit)",
         "intervalUnit is required when interval is at least 1", ".intervalUnit"),
    ))

    cluster: ClusterRef = Field(description="The Cassandra cluster and the backend to use.")
    firstRunDate: str = Field(
        description="Date of the first run, YYYY-MM-DD (OpsCenter first_run_date).",
        pattern=DATE_PATTERN, json_schema_extra={"format": "date"})
    firstRunTime: str = Field(
        description="Time of the first run, hh:mm:ss, local to timezone "
                    "(OpsCenter first_run_time).", pattern=TIME_PATTERN)
    timezone: str = Field(
        default="GMT", min_length=1, max_length=64,
        description="IANA time zone of firstRunDate and firstRunTime, e.g. GMT, US/Eastern, "
                    "Europe/Berlin (OpsCenter timezone).")
    interval: int = Field(
        description="Runs every `interval` intervalUnits; -1 for a one-time job "
                    "(OpsCenter interval).")
    intervalUnit: IntervalUnit | None = Field(
        default=None,
        description="minutes, hours, days or weeks; null for a one-time job "
                    "(OpsCenter interval_unit). Days and weeks keep the local time across DST.")
    jobParams: JobParams = Field(
        default_factory=JobParams, description="What to back up and how long to keep it.")
    suspend: bool = Field(
        default=False, description="Stop firing runs; unsuspending never fires missed ticks.")
    concurrencyPolicy: Literal["Forbid", "Allow"] = Field(
        default="Forbid",
        description="Forbid skips a tick while a run of this schedule is still active; Allow "
                    "starts it anyway.")
    startingDeadlineSeconds: int | None = Field(
        default=3600, ge=0,
        description="A tick missed (operator down) by more than this many seconds is skipped "
                    "rather than run late; null means no limit.")
    runDeadlineSeconds: int = Field(
        default=3600, ge=1, le=7 * 24 * 3600,
        description="Copied to each run: nodes not done by then are failed.")


class Condition(Model):
    """A Kubernetes API convention condition."""

    type: str = Field(description="Condition type, e.g. Ready, Suspended, Complete.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word for the cause.")
    message: str = Field(default="", description="What happened, for a person.")
    lastTransitionTime: datetime = Field(description="When status last changed.")
    observedGeneration: int | None = Field(
        default=None, description="The metadata.generation this condition was computed for.")


class BackupScheduleStatus(Model):
    """What the operator observed; written by the operator only."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, description="OpsCenter job schedule id "
                                                     "(opscenter backend).")
    backend: Literal["sidecars", "opscenter"] | None = Field(
        default=None, description="Backend in use, for the Backend column.")
    every: str | None = Field(default=None, description="Interval in words, e.g. `1 days` or "
                                                       "`once`, for the Every column.")
    nextRun: datetime | None = Field(default=None, description="Next tick, RFC 3339 UTC.")
    nextRunLocal: str | None = Field(
        default=None, description="Next tick in the schedule's time zone, as OpsCenter shows "
                                  "next_run (e.g. `2012-05-03 18:00:00 GMT`).")
    lastRun: datetime | None = Field(
        default=None, description="Scheduled time of the last run that succeeded on every "
                                  "node (OpsCenter last_run). Partial runs never count.")
    lastRunName: str | None = Field(default=None, description="Name of that BackupRun.")
    lastScheduleTime: datetime | None = Field(
        default=None, description="Last tick the operator acted on: fired, skipped or missed.")
    armedAt: datetime | None = Field(
        default=None, description="When the schedule was created, last changed or "
                                  "unsuspended; ticks before this never fire.")
    activeRuns: list[str] = Field(default_factory=list,
                                  description="Runs of this schedule not yet finished.")
    conditions: list[Condition] = Field(default_factory=list,
                                        description="Ready and Suspended.")
    observedGeneration: int | None = Field(
        default=None, description="metadata.generation the status was computed for.")


class RunKeyspace(Model):
    """One keyspace of a run, in OpsCenter's backup listing shape."""

    nodes: list[str] = Field(default_factory=list,
                             description="Nodes (addresses) the keyspace is or was taken on; "
                                         "empty in a spec means every node.")
    size: int | None = Field(default=None, ge=0, description="Bytes on disk, all nodes.")


class BackupRunSpec(Model):
    """One backup: a snapshot with one tag on every node."""

    model_config = ConfigDict(json_schema_extra=cel(
        ("!has(self.keyspaces) || "
         f"self.keyspaces.all(k, k.matches('{KEYSPACE_PATTERN}'))",
         "keyspace names must match " + KEYSPACE_PATTERN, ".keyspaces"),
        ("!has(self.tag) || (self.tag != '.' && self.tag != '..' && !self.tag.startsWith('-'))",
         "tag may not be '.' or '..' nor start with '-'", ".tag"),
    ))

    cluster: ClusterRef = Field(description="The Cassandra cluster and the backend to use.")
    keyspaces: dict[str, RunKeyspace] = Field(
        default_factory=dict,
        description="Keyspaces to snapshot, each with optional node addresses; {} means every "
                    "keyspace on every node (OpsCenter's backups/run body).")
    tag: str | None = Field(
        default=None, pattern=TAG_PATTERN,
        description="Snapshot tag on every node; defaults to the run's name. Fixed once set.")
    runDeadlineSeconds: int = Field(
        default=3600, ge=1, le=7 * 24 * 3600,
        description="Nodes that have not finished this many seconds after the start are failed.")
    deletionPolicy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="What deleting this resource does to the snapshots: Retain keeps them on "
                    "the nodes, Delete clears them from every node first.")


class NodeResult(Model):
    """One node's part of a run."""

    node: str = Field(description="The node's address (pod IP or endpoint host).")
    pod: str | None = Field(default=None, description="Pod name, when found by podSelector.")
    phase: NodePhase = Field(description="Pending, Running, Succeeded or Failed.")
    error: str | None = Field(default=None, description="Why the node failed.")
    sizeBytes: int | None = Field(default=None, ge=0, description="Snapshot bytes on the node.")
    startTime: datetime | None = Field(default=None, description="When the request was sent.")
    completionTime: datetime | None = Field(default=None, description="When the node finished.")


class BackupRunStatus(Model):
    """Progress and result of a run; written by the operator only."""

    model_config = ConfigDict(extra="allow")

    phase: RunPhase | None = Field(
        default=None, description="Pending, Running, Succeeded, PartiallyFailed or Failed.")
    tag: str | None = Field(default=None, description="The snapshot tag, fixed before the "
                                                      "first node request.")
    backupId: str | None = Field(default=None, description="OpsCenter backup id (opscenter "
                                                           "backend).")
    startTime: datetime | None = Field(default=None, description="When the run started.")
    completionTime: datetime | None = Field(default=None, description="When the run ended.")
    nodes: list[NodeResult] = Field(default_factory=list, description="Per-node results.")
    nodesSucceeded: str | None = Field(default=None, description="`succeeded/total`, for the "
                                                                 "Nodes column.")
    keyspaces: dict[str, RunKeyspace] = Field(
        default_factory=dict, description="Keyspaces taken, with their nodes and bytes "
                                          "(OpsCenter's backup listing shape).")
    sizeBytes: int | None = Field(default=None, ge=0, description="Bytes on disk, all nodes.")
    conditions: list[Condition] = Field(default_factory=list, description="Complete, Ready.")
    observedGeneration: int | None = Field(default=None,
                                           description="metadata.generation observed.")


class BackupSchedule(Model):
    """A BackupSchedule resource."""

    model_config = ConfigDict(json_schema_extra=cel(
        (f"self.metadata.name.size() <= {MAX_SCHEDULE_NAME}",
         f"a BackupSchedule name may hold at most {MAX_SCHEDULE_NAME} characters, so that its "
         "run names and label values stay within 63"),
    ))

    spec: BackupScheduleSpec = Field(description="When to back up which keyspaces.")
    status: BackupScheduleStatus | None = Field(default=None,
                                                description="Observed state.")


class BackupRun(Model):
    """A BackupRun resource."""

    model_config = ConfigDict(json_schema_extra=cel(
        ("has(self.spec.tag) || self.metadata.name.size() <= 128",
         "a BackupRun without spec.tag uses its name as the snapshot tag, which may hold at "
         "most 128 characters: set spec.tag or use a shorter name"),
    ))

    spec: BackupRunSpec = Field(description="What to snapshot where.")
    status: BackupRunStatus | None = Field(default=None, description="Observed state.")
