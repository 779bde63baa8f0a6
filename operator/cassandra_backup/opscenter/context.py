"""What every reconcile of the opscenter backend shares, and how it reports trouble.

A client per OpsCenter, login and CA outlives a single poll, so that OpsCenter sees one
session rather than a login per resource and minute. ``Backoff`` remembers failures: a
refusal (4xx) is not asked again until the spec or its Secrets change or
``REFUSED_RECHECK`` has passed; a 5xx, a timeout or a garbled answer is retried with
exponential back-off. That memory is kept in the process: after a restart each failing
resource is tried once more, which is no storm.

``RetryLater`` is how the backend's entry points ask the kopf wiring to call again.
"""

from __future__ import annotations

import hashlib
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cassandra_backup import models
from cassandra_backup.kube import EventSink, KubeApi, SecretMissing
from cassandra_backup.metrics import Metrics
from cassandra_backup.opscenter.client import Credentials, OpsCenterClient

DEFAULT_TIMEOUT = 30.0
REFUSED_RECHECK = timedelta(minutes=10)
MAX_BACKOFF = timedelta(minutes=10)
MAX_BACKOFF_BASE = timedelta(seconds=10)
MAX_CLIENTS = 64


class RetryLater(Exception):
    """OpsCenter could not be reached or refused for now; try again after ``delay`` s."""

    def __init__(self, message: str, *, delay: float = 30.0) -> None:
        super().__init__(message)
        self.delay = delay


class InvalidCA(Exception):
    """The caSecret holds nothing an SSL context can load as a CA certificate."""


Version = tuple[int, str]


@dataclass
class _Failure:
    version: Version
    attempts: int
    retry_at: datetime


class Backoff:
    """When each resource may talk to OpsCenter again after a failure.

    A refusal waits ``REFUSED_RECHECK``; anything transient waits ``base * 2**n`` (n
    failures so far) with jitter, at most ``MAX_BACKOFF``. A new version (the spec's
    generation, and a fingerprint of the Secrets in use) lifts the wait at once: someone
    changed something, so it is worth asking again.
    """

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], _Failure] = {}

    def blocked_until(self, key: tuple[str, str], *, version: Version,
                      now: datetime) -> datetime | None:
        failure = self._failures.get(key)
        if failure is None or failure.version != version or now >= failure.retry_at:
            return None
        return failure.retry_at

    def failed(self, key: tuple[str, str], *, version: Version, now: datetime, transient: bool,
               base: timedelta, refused_wait: timedelta = REFUSED_RECHECK) -> datetime:
        previous = self._failures.get(key)
        attempts = previous.attempts + 1 if previous and previous.version == version else 1
        if transient:
            ceiling = min(MAX_BACKOFF, base * (1 << min(attempts - 1, 16)))
            wait = ceiling * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not a secret
        else:
            wait = refused_wait
        retry_at = now + wait
        self._failures[key] = _Failure(version=version, attempts=attempts, retry_at=retry_at)
        return retry_at

    def attempts(self, key: tuple[str, str]) -> int:
        failure = self._failures.get(key)
        return failure.attempts if failure else 0

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)


ClientFactory = Callable[..., OpsCenterClient]


class OpsCenterClients:
    """One client per OpsCenter, login and CA, kept so that a session outlives a poll.

    The Secrets are read on every use, so a rotated password or CA takes effect at the
    next poll (with a client of its own).
    """

    def __init__(self, factory: ClientFactory = OpsCenterClient) -> None:
        self._factory = factory
        self._clients: dict[tuple[str, ...], OpsCenterClient] = {}
        self._fingerprints: dict[int, str] = {}

    async def get(self, api: KubeApi, *, namespace: str, backend: models.OpsCenterBackend,
                  request_timeout: float) -> OpsCenterClient:
        credentials = None
        if backend.credentialsSecret is not None:
            data = await api.secret_data(namespace=namespace, name=backend.credentialsSecret.name)
            for secret_key in ("username", "password"):
                if secret_key not in data:
                    raise SecretMissing(namespace=namespace, name=backend.credentialsSecret.name,
                                        key=secret_key)
            credentials = Credentials(username=data["username"].strip(),
                                      password=data["password"].strip())
        ca = None
        if backend.caSecret is not None:
            ca = await api.secret_value(namespace=namespace, name=backend.caSecret.name,
                                        key=backend.caSecret.key)
        key = (backend.url, credentials.username if credentials else "",
               _digest(credentials.password if credentials else ""), _digest(ca or ""),
               str(request_timeout))
        client = self._clients.get(key)
        if client is None:
            while len(self._clients) >= MAX_CLIENTS:   # rotated Secrets leave old ones behind
                oldest = next(iter(self._clients))
                evicted = self._clients.pop(oldest)
                self._fingerprints.pop(id(evicted), None)
                await evicted.aclose()
            verify: bool | ssl.SSLContext = True
            if ca is not None:
                try:
                    verify = ssl.create_default_context(cadata=ca)
                except (ssl.SSLError, ValueError):
                    raise InvalidCA("holds no PEM certificate that can serve as a CA") from None
            client = self._factory(base_url=backend.url, credentials=credentials, verify=verify,
                                   timeout=request_timeout)
            self._clients[key] = client
            self._fingerprints[id(client)] = _digest("\n".join(key))
        return client

    def fingerprint(self, client: OpsCenterClient) -> str:
        """Stands for the URL, login and CA the client was made for; never shows them."""
        return self._fingerprints.get(id(client), "")

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class OpsCenterContext:
    api: KubeApi
    events: EventSink
    clock: Callable[[], datetime]
    metrics: Metrics
    poll_interval: timedelta
    request_timeout: float = DEFAULT_TIMEOUT
    clients: OpsCenterClients = field(default_factory=OpsCenterClients)
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def backoff_base(self) -> timedelta:
        return min(self.poll_interval, MAX_BACKOFF_BASE)

    async def client(self, *, namespace: str,
                     backend: models.OpsCenterBackend) -> OpsCenterClient:
        return await self.clients.get(self.api, namespace=namespace, backend=backend,
                                      request_timeout=self.request_timeout)
