"""Kubernetes operator for Apache Cassandra backups.

Two kinds, ``BackupSchedule`` and ``BackupRun``, reconciled against either the
node snapshot sidecars this project ships or a DataStax OpsCenter.
"""

__version__ = "0.1.0"
