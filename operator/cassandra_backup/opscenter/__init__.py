"""The DataStax OpsCenter API, and the opscenter backend that speaks it.

``mapping`` is the only place that knows OpsCenter's snake_case wire names; ``client``
sends requests and turns every failure into an ``errors.OpsCenterError`` whose text a
person can act on and which never carries a password or a session id. On top of them,
``schedules``, ``mirror`` and ``runs`` reconcile the two kinds, sharing ``context``.
With this backend OpsCenter is the scheduler: the operator keeps one OpsCenter job
schedule per BackupSchedule and mirrors what OpsCenter reports.
"""
