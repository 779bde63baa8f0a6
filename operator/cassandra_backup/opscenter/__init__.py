"""The DataStax OpsCenter API, as the opscenter backend speaks it.

``mapping`` is the only place that knows OpsCenter's snake_case wire names; ``client``
sends requests and turns every failure into an ``errors.OpsCenterError`` whose text a
person can act on and which never carries a password or a session id.
"""
