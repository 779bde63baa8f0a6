"""Async client of the OpsCenter job-schedule and backup API, one method per endpoint.

OpsCenter with authentication on wants ``POST /login`` first; the session id it gives
is sent as the ``opscenter-session`` header. Sessions expire, so a 401 is answered
with exactly one fresh login and one repeat of the request; a second 401 is an error.

Requests that are safe to repeat (GET, PUT, DELETE, the login) are retried on a 5xx
or a timeout, a bounded number of times, with exponential back-off and jitter. The two
POSTs that make something (a job schedule, an ad hoc backup) are repeated only when
the request provably never left (no connection): repeating one whose answer was lost
could make a second schedule. The caller decides what to do then (the reconciler
looks the schedule up before it posts again). A 4xx is never retried.

The password and session ids live in the request body and headers only; every error
text passes through ``redact`` in case OpsCenter echoes one back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from cassandra_backup import models
from cassandra_backup.opscenter import mapping
from cassandra_backup.opscenter.errors import (
    ErrorBody,
    OpsCenterBadAnswer,
    OpsCenterError,
    OpsCenterLoginFailed,
    OpsCenterNotFound,
    OpsCenterRefused,
    OpsCenterUnavailable,
    redact,
)

log = logging.getLogger(__name__)

SESSION_HEADER = "opscenter-session"
DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0

Sleep = Callable[[float], Awaitable[None]]
_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True)
class Credentials:
    """The login OpsCenter asks for; the password never shows in a repr."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a repeatable request is tried, and how long to wait in between.

    The n-th wait is drawn from [d/2, d] with d = ``base_delay * 2**n`` capped at
    ``max_delay``, so many operators that lost OpsCenter at once do not return in step.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, retry: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** retry)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


class OpsCenterClient:
    """Talks to the OpsCenter API at ``base_url`` (for example ``https://opscenter:8443``).

    ``verify`` is True (system CAs), False (no check) or an SSL context holding the CA
    that signed OpsCenter's certificate. ``sleep`` is what back-off waits with.
    """

    def __init__(self, *, base_url: str, credentials: Credentials | None = None,
                 verify: bool | ssl.SSLContext = True, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        url = httpx.URL(base_url.rstrip("/"))
        # Only scheme, host, port and path ever appear in a message: never userinfo.
        self.base_url = str(url.copy_with(username=None, password=None))
        self._credentials = credentials
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._session: str | None = None
        self._spent_sessions: list[str] = []
        self._login_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=self.base_url, verify=verify, transport=transport, trust_env=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)))
        self.logins = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # Job schedules.

    async def list_schedules(self, cluster: str) -> list[mapping.JobSchedule]:
        """GET /{cluster}/job-schedules: every job schedule of the cluster."""
        data = await self._call("GET", f"/{_segment(cluster)}/job-schedules")
        return self._read(mapping.parse_schedules, data, "GET", "job-schedules")

    async def get_schedule(self, cluster: str, schedule_id: str) -> mapping.JobSchedule:
        """GET /{cluster}/job-schedules/{id}; ``OpsCenterNotFound`` when OpsCenter has no
        such cluster or id."""
        path = f"/{_segment(cluster)}/job-schedules/{_segment(schedule_id)}"
        data = await self._call("GET", path)
        return self._read(mapping.JobSchedule.parse, data, "GET", path)

    async def create_schedule(self, cluster: str, body: dict[str, Any]) -> str:
        """POST /{cluster}/job-schedules/: 201 with the new id as a JSON string."""
        path = f"/{_segment(cluster)}/job-schedules/"
        data = await self._call("POST", path, json=body, repeatable=False)
        if not isinstance(data, str) or not data:
            raise OpsCenterBadAnswer(
                f"OpsCenter at {self.base_url} answered POST {path} without the new job "
                f"schedule id (expected a JSON string, got {type(data).__name__})")
        return data

    async def modify_schedule(self, cluster: str, schedule_id: str,
                              body: dict[str, Any]) -> None:
        """PUT /{cluster}/job-schedules/{id}: 200 and null."""
        path = f"/{_segment(cluster)}/job-schedules/{_segment(schedule_id)}"
        await self._call("PUT", path, json=body)

    async def delete_schedule(self, cluster: str, schedule_id: str) -> None:
        """DELETE /{cluster}/job-schedules/{id}: 200 and null."""
        path = f"/{_segment(cluster)}/job-schedules/{_segment(schedule_id)}"
        await self._call("DELETE", path)

    # Backups.

    async def list_backups(self, cluster: str) -> dict[str, mapping.Backup]:
        """GET /{cluster}/backups: every snapshot in the cluster, keyed by tag."""
        path = f"/{_segment(cluster)}/backups"
        return self._read(mapping.parse_backups, await self._call("GET", path), "GET", path)

    async def list_keyspace_backups(self, cluster: str,
                                    keyspace: str) -> dict[str, mapping.Backup]:
        """GET /{cluster}/backups/{keyspace}: the snapshots holding that keyspace."""
        path = f"/{_segment(cluster)}/backups/{_segment(keyspace)}"
        return self._read(mapping.parse_backups, await self._call("GET", path), "GET", path)

    async def run_backup(self, cluster: str, keyspaces: dict[str, models.RunKeyspace], *,
                         answer_within: float | None = None) -> list[mapping.NodeOutcome]:
        """POST /{cluster}/backups/run: one backup now; one ``[ok, [error, node]]`` per node.

        ``answer_within`` (seconds) replaces the client's timeout for this request, whose
        answer OpsCenter sends only once every node is done.
        """
        path = f"/{_segment(cluster)}/backups/run"
        data = await self._call("POST", path, json=mapping.run_body(keyspaces),
                                repeatable=False, answer_within=answer_within)
        return self._read(mapping.parse_run_answer, data, "POST", path)

    # Sessions.

    async def login(self) -> None:
        """POST /login with the credentials; keeps the session id for later requests."""
        if self._credentials is None:
            return
        self.logins += 1
        body = {"username": self._credentials.username, "password": self._credentials.password}
        try:
            data = await self._call("POST", "/login", json=body, authenticated=False)
        except OpsCenterRefused as exc:
            raise OpsCenterLoginFailed(
                f"OpsCenter at {self.base_url} refused the login (HTTP {exc.status}): "
                f"{self._opscenter_words(exc)}; check the username and password in the "
                "credentials Secret", status=exc.status, body=exc.body) from None
        session = data.get("sessionid") if isinstance(data, dict) else None
        if not isinstance(session, str) or not session:
            raise OpsCenterBadAnswer(
                f"OpsCenter at {self.base_url} answered POST /login without a sessionid")
        if self._session:
            self._spent_sessions = [*self._spent_sessions[-7:], self._session]
        self._session = session

    async def _fresh_login(self, stale: str | None) -> None:
        async with self._login_lock:
            if self._session is not None and self._session != stale:
                return   # another request logged in while this one waited
            await self.login()

    # Transport.

    async def _call(self, method: str, path: str, *, json: Any = None, repeatable: bool = True,
                    authenticated: bool = True, answer_within: float | None = None) -> Any:
        """Send one request with retries and at most one re-login; the decoded JSON answer."""
        if authenticated and self._credentials is not None and self._session is None:
            await self._fresh_login(None)
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            session = self._session if authenticated else None
            try:
                response = await self._http.request(
                    method, path, json=json, timeout=_timeout(answer_within),
                    headers={SESSION_HEADER: session} if session else None)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if (repeatable or never_sent) and attempt < self._retry.attempts:
                    await self._back_off(method, path, attempt, type(exc).__name__)
                    continue
                raise self._unreachable(method, path, exc, attempt, answer_within) from None

            status = response.status_code
            if status == 401 and authenticated:
                if self._credentials is None:
                    raise OpsCenterLoginFailed(
                        f"OpsCenter at {self.base_url} wants a login for {method} {path} "
                        "(HTTP 401) and no credentials are set: name a Secret with keys "
                        "username and password in spec.cluster.opscenter.credentialsSecret",
                        status=401, body=self._body(response))
                if not relogged:
                    relogged = True
                    log.debug("OpsCenter at %s: session refused; logging in again",
                              self.base_url)
                    await self._fresh_login(session)
                    attempt -= 1   # the repeat after a fresh login is not a retry
                    continue
                raise OpsCenterLoginFailed(
                    f"OpsCenter at {self.base_url} refused {method} {path} (HTTP 401) even "
                    f"right after a fresh login: {self._words(response)}",
                    status=401, body=self._body(response))
            if status >= 500:
                if repeatable and attempt < self._retry.attempts:
                    await self._back_off(method, path, attempt, f"HTTP {status}")
                    continue
                raise OpsCenterUnavailable(
                    f"OpsCenter at {self.base_url} failed {method} {path} with HTTP {status}: "
                    f"{self._words(response)}{_tries(attempt)}",
                    status=status, body=self._body(response))
            if status >= 400:
                raise self._refused(method, path, response)
            return self._decode(method, path, response)

    async def _back_off(self, method: str, path: str, attempt: int, why: str) -> None:
        delay = self._retry.delay(attempt - 1)
        log.info("OpsCenter at %s: %s %s got %s; try %d of %d in %.1f s", self.base_url,
                 method, path, why, attempt + 1, self._retry.attempts, delay)
        await self._sleep(delay)

    def _decode(self, method: str, path: str, response: httpx.Response) -> Any:
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise OpsCenterBadAnswer(
                f"OpsCenter at {self.base_url} answered {method} {path} (HTTP "
                f"{response.status_code}) with a body that is not JSON ({_excerpt(response)}); "
                "is the URL the OpsCenter API, with no proxy page in between?",
                status=response.status_code) from None

    def _read(self, reader: Callable[[Any], _Parsed], data: Any, method: str,
              path: str) -> _Parsed:
        try:
            return reader(data)
        except ValueError as exc:
            raise OpsCenterBadAnswer(
                f"OpsCenter at {self.base_url} answered {method} {path} with JSON this "
                f"operator cannot read: {self._clean(str(exc))}") from None

    def _refused(self, method: str, path: str, response: httpx.Response) -> OpsCenterError:
        status = response.status_code
        body = self._body(response)
        kind = OpsCenterNotFound if status == 404 else OpsCenterRefused
        return kind(f"OpsCenter at {self.base_url} refused {method} {path} with HTTP {status}"
                    f"{self._type(body)}: {self._words(response)}", status=status, body=body)

    def _unreachable(self, method: str, path: str, exc: httpx.TransportError, attempt: int,
                     answer_within: float | None) -> OpsCenterUnavailable:
        if isinstance(exc, httpx.TimeoutException):
            limit = answer_within if answer_within is not None else self._timeout
            what = f"did not answer {method} {path} within {limit:g} s"
        else:
            detail = self._clean(str(exc)) or type(exc).__name__
            what = f"could not be reached for {method} {path}: {detail}"
        return OpsCenterUnavailable(f"OpsCenter at {self.base_url} {what}{_tries(attempt)}")

    def _type(self, body: ErrorBody | None) -> str:
        return f" ({self._clean(body.type)})" if body is not None and body.type else ""

    def _body(self, response: httpx.Response) -> ErrorBody | None:
        body = ErrorBody.parse(response.content)
        if body is None:
            return None
        return ErrorBody(brief=self._clean(body.brief), message=self._clean(body.message),
                         type=self._clean(body.type))

    def _words(self, response: httpx.Response) -> str:
        body = self._body(response)
        if body is not None and body.sentence():
            return body.sentence()
        return self._clean(_excerpt(response))

    def _opscenter_words(self, exc: OpsCenterError) -> str:
        if exc.body is not None and exc.body.sentence():
            return exc.body.sentence()
        return "no reason given"

    def _clean(self, text: str) -> str:
        secrets = [*self._spent_sessions, self._session or ""]
        if self._credentials is not None:
            secrets.append(self._credentials.password)
        return redact(text, secrets)


def _segment(value: str) -> str:
    """One URL path segment: a cluster name, schedule id or keyspace can never add a '/'."""
    return quote(value, safe="")


def _timeout(answer_within: float | None) -> httpx.Timeout | Any:
    if answer_within is None:
        return httpx.USE_CLIENT_DEFAULT
    return httpx.Timeout(answer_within, connect=min(answer_within, CONNECT_TIMEOUT))


def _tries(attempt: int) -> str:
    return f" (tried {attempt} times)" if attempt > 1 else ""


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    if not text:
        return response.reason_phrase or "no error text"
    return text if len(text) <= 200 else text[:197] + "..."
