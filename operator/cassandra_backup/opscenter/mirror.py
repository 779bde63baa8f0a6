"""The BackupRuns that stand for backups OpsCenter took on a schedule's behalf.

OpsCenter, not the operator, takes these backups, so their runs carry nothing the
operator decided: the spec is what the backup covers, the status is copied from
OpsCenter's backup listing, and the ``BACKUP_ANNOTATION`` names the backup a run
mirrors. Both the schedule's poll, which creates them, and a run's own reconcile,
which fills one in, build them from here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from cassandra_backup import models, schedule
from cassandra_backup.conditions import set_condition
from cassandra_backup.opscenter import mapping
from cassandra_backup.runs import succeeded_count
from cassandra_backup.timefmt import rfc3339

BACKUP_ANNOTATION = f"{models.GROUP}/opscenter-backup"


def mirrored_tag(run: dict[str, Any]) -> str | None:
    """The tag of the OpsCenter backup that ``run`` mirrors; None for a run of its own."""
    value = (run["metadata"].get("annotations") or {}).get(BACKUP_ANNOTATION)
    return value if isinstance(value, str) and value else None


def mirror_names(schedule_name: str, backup: mapping.Backup) -> list[str]:
    """Names to try for the run of a backup: the tick form first, then with seconds."""
    return [schedule.run_name(schedule_name, backup.time),
            f"{schedule_name}-{backup.time:%Y%m%d-%H%M%S}"]


def mirror_body(*, schedule_body: dict[str, Any], spec: models.BackupScheduleSpec,
                backup: mapping.Backup, name: str) -> dict[str, Any]:
    """The BackupRun that stands for one backup OpsCenter took for a schedule.

    It is owned by the schedule, and labelled so that ``-l`` selects by schedule,
    cluster and keyspace. Deleting it leaves the snapshot to OpsCenter (Retain).
    """
    meta = schedule_body["metadata"]
    labels = {models.SCHEDULE_LABEL: meta["name"], models.CLUSTER_LABEL: spec.cluster.name}
    labels.update({models.KEYSPACE_LABEL_PREFIX + ks: "true" for ks in backup.keyspaces})
    run_spec: dict[str, Any] = {
        "cluster": spec.cluster.wire(),
        "keyspaces": {ks: {"nodes": entry.nodes} for ks, entry in backup.keyspaces.items()},
        "runDeadlineSeconds": spec.runDeadlineSeconds,
        "deletionPolicy": "Retain",
    }
    if _valid_tag(backup.tag):
        run_spec["tag"] = backup.tag
    return {
        "apiVersion": models.API_VERSION,
        "kind": "BackupRun",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {models.SCHEDULED_AT_ANNOTATION: rfc3339(backup.time),
                            BACKUP_ANNOTATION: backup.tag},
            "ownerReferences": [{
                "apiVersion": models.API_VERSION, "kind": "BackupSchedule",
                "name": meta["name"], "uid": meta["uid"], "controller": True,
            }],
        },
        "spec": run_spec,
    }


def _valid_tag(tag: str) -> bool:
    """Whether the CRD admits ``tag`` as spec.tag (status keeps it either way)."""
    return (re.fullmatch(models.TAG_PATTERN, tag) is not None and tag not in (".", "..")
            and not tag.startswith("-"))


def mirror_status(backup: mapping.Backup, *, now: datetime) -> dict[str, Any]:
    """A mirrored run's status, from OpsCenter's listing entry alone."""
    taken = rfc3339(backup.time)
    nodes = [models.NodeResult(node=node, phase="Succeeded", startTime=backup.time,
                               completionTime=backup.time) for node in backup.nodes]
    message = (f"OpsCenter backup {backup.tag}: {len(backup.keyspaces)} keyspaces on "
               f"{len(nodes)} nodes")
    return {
        "phase": "Succeeded",
        "tag": backup.tag,
        "backupId": backup.tag,
        "startTime": taken,
        "completionTime": taken,
        "nodes": [node.wire() for node in nodes],
        "nodesSucceeded": succeeded_count(nodes),
        "keyspaces": {ks: entry.wire()
                      for ks, entry in sorted(backup.keyspaces.items())},
        "sizeBytes": backup.size_bytes,
        "conditions": set_condition([], type="Complete", status="True", reason="Succeeded",
                                    message=message, now=now),
    }
