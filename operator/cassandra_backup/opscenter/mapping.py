"""The one translation between the resources' camelCase fields and OpsCenter's wire names.

A BackupSchedule spec mirrors an OpsCenter JobSchedule field for field; only the
spelling differs (``firstRunDate`` is ``first_run_date``). A one-time job is
``interval: -1`` with ``interval_unit: null`` on both sides. Everything OpsCenter
answers is read here too: job schedules, the backup listing keyed by snapshot tag,
and the ``[ok, [error, node]]`` pairs of an ad hoc backup.

Readers are lenient about what they do not use and strict about what they do: a
field the operator relies on that is missing or of the wrong type is a
``ValueError``, which the client reports as an answer it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cassandra_backup import models

ONE_TIME_INTERVAL = -1

SCHEDULE_FIELDS: dict[str, str] = {
    "firstRunDate": "first_run_date",
    "firstRunTime": "first_run_time",
    "timezone": "timezone",
    "interval": "interval",
    "intervalUnit": "interval_unit",
    "jobParams": "job_params",
}
JOB_PARAM_FIELDS: dict[str, str] = {
    "type": "type",
    "keyspaces": "keyspaces",
    "cleanupAge": "cleanup_age",
    "cleanupAgeUnit": "cleanup_age_unit",
}

_LOCAL_TIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[ T](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.[0-9]+)?\s*(?P<zone>\S.*)?")


def to_wire(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Rename camelCase schedule fields (``jobParams`` included) to OpsCenter's names."""
    wire: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "jobParams":
            value = {JOB_PARAM_FIELDS[key]: item for key, item in value.items()}
        wire[SCHEDULE_FIELDS[name]] = value
    return wire


def from_wire(wire: Mapping[str, Any]) -> dict[str, Any]:
    """The camelCase fields of an OpsCenter JobSchedule; ids, run times and unknown keys
    are left out."""
    schedule_names = {snake: camel for camel, snake in SCHEDULE_FIELDS.items()}
    param_names = {snake: camel for camel, snake in JOB_PARAM_FIELDS.items()}
    fields: dict[str, Any] = {}
    for snake, value in wire.items():
        if snake not in schedule_names:
            continue
        if snake == "job_params" and isinstance(value, Mapping):
            value = {param_names[k]: v for k, v in value.items() if k in param_names}
        fields[schedule_names[snake]] = value
    return fields


def schedule_body(spec: models.BackupScheduleSpec) -> dict[str, Any]:
    """The JobSchedule body of POST and PUT for a BackupSchedule spec.

    Retention is sent only when set: OpsCenter keeps backups forever without it.
    """
    params: dict[str, Any] = {"type": spec.jobParams.type,
                              "keyspaces": list(spec.jobParams.keyspaces)}
    if spec.jobParams.cleanupAge is not None:
        params["cleanupAge"] = spec.jobParams.cleanupAge
        params["cleanupAgeUnit"] = spec.jobParams.cleanupAgeUnit
    one_time = spec.interval == ONE_TIME_INTERVAL
    return to_wire({
        "firstRunDate": spec.firstRunDate,
        "firstRunTime": spec.firstRunTime,
        "timezone": spec.timezone,
        "interval": ONE_TIME_INTERVAL if one_time else spec.interval,
        "intervalUnit": None if one_time else spec.intervalUnit,
        "jobParams": params,
    })


@dataclass(frozen=True)
class JobSchedule:
    """A job schedule as OpsCenter lists it; ``last_run`` and ``next_run`` as OpsCenter
    shows them (``""`` when there is none)."""

    id: str
    fields: dict[str, Any]
    last_run: str
    next_run: str

    @classmethod
    def parse(cls, data: Any) -> JobSchedule:
        if not isinstance(data, Mapping):
            raise ValueError(f"a job schedule must be a JSON object, not {_kind(data)}")
        schedule_id = data.get("id")
        if not isinstance(schedule_id, str) or not schedule_id:
            raise ValueError("a job schedule has no string id")
        return cls(id=schedule_id, fields=from_wire(data),
                   last_run=_display_text(data.get("last_run")),
                   next_run=_display_text(data.get("next_run")))

    def wire(self) -> dict[str, Any]:
        return to_wire(self.fields)


def same_schedule(body: Mapping[str, Any], job: JobSchedule) -> bool:
    """Whether OpsCenter's ``job`` carries exactly the fields of a POST ``body``.

    Used to find a schedule created by a POST whose answer never arrived. Keyspace
    order and an absent versus null interval_unit do not count as differences.
    """
    return _normal(body) == _normal(job.wire())


def _normal(wire: Mapping[str, Any]) -> dict[str, Any]:
    params = dict(wire.get("job_params") or {})
    params["keyspaces"] = sorted(params.get("keyspaces") or [])
    if params.get("cleanup_age") is None:
        params.pop("cleanup_age", None)
        params.pop("cleanup_age_unit", None)
    return {
        "first_run_date": wire.get("first_run_date"),
        "first_run_time": wire.get("first_run_time"),
        "timezone": wire.get("timezone"),
        "interval": wire.get("interval"),
        "interval_unit": wire.get("interval_unit") or None,
        "job_params": params,
    }


def parse_schedules(data: Any) -> list[JobSchedule]:
    if not isinstance(data, list):
        raise ValueError(f"the job schedule list must be a JSON array, not {_kind(data)}")
    return [JobSchedule.parse(item) for item in data]


@dataclass(frozen=True)
class Backup:
    """One entry of OpsCenter's backup listing: a snapshot tag across the cluster.

    ``schedule_id`` is the job schedule that took it, or ``adhoc`` for a one-off run.
    """

    tag: str
    schedule_id: str
    keyspaces: dict[str, models.RunKeyspace]
    time: datetime

    @property
    def nodes(self) -> list[str]:
        return sorted({node for keyspace in self.keyspaces.values() for node in keyspace.nodes})

    @property
    def size_bytes(self) -> int:
        return sum(keyspace.size or 0 for keyspace in self.keyspaces.values())

    @classmethod
    def parse(cls, tag: str, data: Any) -> Backup:
        if not isinstance(data, Mapping):
            raise ValueError(f"backup {tag} must be a JSON object, not {_kind(data)}")
        taken = data.get("time")
        if isinstance(taken, bool) or not isinstance(taken, int | float):
            raise ValueError(f"backup {tag} has no numeric time")
        keyspaces = data.get("keyspaces") or {}
        if not isinstance(keyspaces, Mapping):
            raise ValueError(f"backup {tag} has keyspaces that are not a JSON object")
        parsed: dict[str, models.RunKeyspace] = {}
        for name, entry in keyspaces.items():
            if not isinstance(entry, Mapping):
                raise ValueError(f"keyspace {name} of backup {tag} is not a JSON object")
            nodes = entry.get("nodes") or []
            size = entry.get("size")
            if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
                raise ValueError(f"keyspace {name} of backup {tag} has no list of nodes")
            parsed[str(name)] = models.RunKeyspace(
                nodes=sorted(nodes), size=size if isinstance(size, int) and size >= 0 else None)
        return cls(tag=tag, schedule_id=str(data.get("id") or ""), keyspaces=parsed,
                   time=datetime.fromtimestamp(taken, UTC))


def parse_backups(data: Any) -> dict[str, Backup]:
    if not isinstance(data, Mapping):
        raise ValueError(f"the backup listing must be a JSON object, not {_kind(data)}")
    return {str(tag): Backup.parse(str(tag), entry) for tag, entry in data.items()}


def run_body(keyspaces: Mapping[str, models.RunKeyspace]) -> dict[str, Any]:
    """The body of POST /{cluster}/backups/run: each keyspace with the nodes to take it on.

    A keyspace without nodes is sent without a ``nodes`` key, meaning every node.
    """
    return {"keyspaces": {
        name: ({"nodes": list(wanted.nodes)} if wanted.nodes else {})
        for name, wanted in sorted(keyspaces.items())
    }}


@dataclass(frozen=True)
class NodeOutcome:
    """One node's answer to an ad hoc backup."""

    node: str
    ok: bool
    error: str | None = field(default=None)


def parse_run_answer(data: Any) -> list[NodeOutcome]:
    """The ``[ok, [error, node]]`` pairs of POST backups/run.

    The pairs come as a JSON array of pairs; a lone pair is read as a list of one, and a
    bare ``true`` (no detail per node) as an empty list.
    """
    if data is True:
        return []
    if isinstance(data, list) and len(data) == 2 and isinstance(data[0], bool):
        data = [data]
    if not isinstance(data, list):
        raise ValueError(f"the backup answer must be a list of [ok, [error, node]] pairs, "
                         f"not {_kind(data)}")
    outcomes = []
    for pair in data:
        if (not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], bool)
                or not isinstance(pair[1], list) or len(pair[1]) != 2
                or not isinstance(pair[1][1], str)):
            raise ValueError(f"{pair!r} is not an [ok, [error, node]] pair")
        ok, (error, node) = pair
        outcomes.append(NodeOutcome(node=node, ok=ok,
                                    error=None if ok else str(error or "no error text")))
    return outcomes


def parse_opscenter_time(text: str | None, *, timezone: str) -> datetime | None:
    """An instant from OpsCenter's display form, ``2012-04-19 18:00:00 GMT``, in UTC.

    The zone after the wall time is read as an IANA name; anything else there (an
    abbreviation such as CEST) falls back to the schedule's own ``timezone``. A wall
    time that happens twice is taken at its first occurrence, as the schedule math does.
    None for an empty or unreadable text.
    """
    if not text:
        return None
    found = _LOCAL_TIME.fullmatch(text.strip())
    if found is None:
        return None
    zone = _zone(found["zone"]) or _zone(timezone) or UTC
    try:
        local = datetime.fromisoformat(f"{found['date']}T{found['time']}")
    except ValueError:
        return None
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _display_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
