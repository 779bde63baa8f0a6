"""A fake DataStax OpsCenter, faithful to the examples of opscenter-api-reference.txt.

OpsCenter cannot be had for tests, so this aiohttp server stands in for it: the eight
job-schedule and backup endpoints plus ``POST /login``, with the reference's status
codes and bodies (201 and the id as a JSON string for a new schedule, ``null`` for a
change or a deletion, the backup listing keyed by snapshot tag, the ``[ok, [error,
node]]`` pairs of an ad hoc backup) and ``next_run`` shown as ``2012-04-19 18:00:00
GMT``. Due schedules take backups on the fake's own clock, which runs with real time
from a settable offset: ``advance`` jumps it forward and fires what became due, and a
background ticker fires what falls due as time passes. Backups then show in the
listing, and the schedule's ``last_run`` moves.

Switches make it misbehave the ways a real one does: sessions that expire (401),
5xx answers, slow answers (the request is carried out, the answer comes late, so a
client that times out has lost it), malformed JSON, an unknown cluster (404 with an
OpsCenter error body), a node whose snapshots fail. Every request received is
recorded (method, path, JSON body, headers) for assertions.

The server runs in a background thread with its own event loop, on 127.0.0.1 and a
free port; tests in any thread, and operator processes, reach it at ``url``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

SESSION_HEADER = "opscenter-session"
DEFAULT_CLUSTER = "Test_Cluster"
DEFAULT_NODES = ("10.11.12.150", "10.11.12.152")
# Bytes each keyspace takes on one node.
DEFAULT_KEYSPACES = {"OpsCenter": 11590, "movies_ks": 7416, "system": 24480, "test": 4543}
UNITS = {"minutes": timedelta(minutes=1), "hours": timedelta(hours=1)}
CALENDAR_UNITS = {"days": 1, "weeks": 7}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeCluster:
    """One cluster OpsCenter manages: its nodes, keyspaces, schedules and backups."""

    nodes: list[str] = field(default_factory=lambda: list(DEFAULT_NODES))
    keyspaces: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_KEYSPACES))
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    backups: dict[str, dict[str, Any]] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)
    armed: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it; header names in lower case."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]


@dataclass
class _Fault:
    kind: Literal["status", "slow", "malformed"]
    method: str | None
    path: str | None
    remaining: int | None
    status: int = 500
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self.path is None or self.path in path))


class OpsCenterFailure(Exception):
    """Answered as OpsCenter's error body ``{"brief", "message", "type"}``."""

    def __init__(self, status: int, brief: str, message: str, type: str) -> None:
        super().__init__(message)
        self.status, self.brief, self.message, self.type = status, brief, message, type

    def response(self) -> web.Response:
        return _json({"brief": self.brief, "message": self.message, "type": self.type},
                     status=self.status)


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=partial(json.dumps, sort_keys=True))


class FakeOpsCenter:
    """The fake server; ``with FakeOpsCenter() as fake: ... fake.url``.

    ``users`` maps usernames to passwords and turns authentication on; ``ssl_context``
    (a server context with a certificate chain loaded) makes it speak HTTPS.
    """

    def __init__(self, *, clusters: dict[str, FakeCluster] | None = None,
                 users: dict[str, str] | None = None, ssl_context: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1", tick_seconds: float = 0.2,
                 now: datetime | None = None) -> None:
        self.clusters = clusters if clusters is not None else {DEFAULT_CLUSTER: FakeCluster()}
        self.users = users
        self.sessions_issued: list[str] = []
        self._sessions: set[str] = set()
        self._refuse_sessions = False
        self._ssl = ssl_context
        self._host = host
        self._tick_seconds = tick_seconds
        self._offset = timedelta(0)
        if now is not None:
            self.set_now(now)
        self._faults: list[_Fault] = []
        self._requests: list[Recorded] = []
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self.port = 0

    # Life cycle.

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    def start(self) -> Self:
        self._sock = socket.socket()
        self._sock.bind((self._host, 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-opscenter", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failed:
            raise RuntimeError(f"the fake OpsCenter did not start: {failed[0]}")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        routes = [
            ("POST", "/login", self._login),
            ("GET", "/{cluster}/job-schedules", self._list_schedules),
            ("POST", "/{cluster}/job-schedules", self._create_schedule),
            ("GET", "/{cluster}/job-schedules/{id}", self._get_schedule),
            ("PUT", "/{cluster}/job-schedules/{id}", self._modify_schedule),
            ("DELETE", "/{cluster}/job-schedules/{id}", self._delete_schedule),
            ("GET", "/{cluster}/backups", self._list_backups),
            ("POST", "/{cluster}/backups/run", self._run_backup),
            ("GET", "/{cluster}/backups/{keyspace}", self._list_keyspace_backups),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            if path != "/login":
                app.router.add_route(method, path + "/", handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        assert self._sock is not None
        await web.SockSite(self._runner, self._sock, ssl_context=self._ssl).start()
        self._ticker = asyncio.create_task(self._tick_forever())

    async def _shutdown(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            self.take_due_backups()

    # The clock.

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def set_now(self, instant: datetime) -> None:
        """Make the fake's clock read ``instant`` now (it keeps running from there)."""
        self._offset = instant.astimezone(UTC) - datetime.now(UTC)

    def advance(self, delta: timedelta) -> list[str]:
        """Move the clock forward; backups that fell due are taken. Returns their tags."""
        with self._lock:
            self._offset += delta
            return self.take_due_backups()

    def take_due_backups(self) -> list[str]:
        """For each schedule whose newest tick is due and not yet run: one backup."""
        taken = []
        with self._lock:
            now = self.now()
            for cluster in self.clusters.values():
                for schedule_id, fields in list(cluster.schedules.items()):
                    latest = latest_tick(fields, now)
                    if latest is None or latest <= cluster.armed.get(schedule_id, now):
                        continue
                    cluster.armed[schedule_id] = latest
                    taken.extend(self._take_scheduled(cluster, schedule_id, fields, latest))
                    self._expire(cluster, schedule_id, fields, now)
        return taken

    # What the tests arrange and inspect.

    def cluster(self, name: str = DEFAULT_CLUSTER) -> FakeCluster:
        return self.clusters[name]

    def schedules(self, cluster: str = DEFAULT_CLUSTER) -> list[dict[str, Any]]:
        """The cluster's job schedules as GET /{cluster}/job-schedules shows them."""
        with self._lock:
            found = self.clusters[cluster]
            return [self._shown(fields) for fields in found.schedules.values()]

    def backups(self, cluster: str = DEFAULT_CLUSTER) -> dict[str, dict[str, Any]]:
        with self._lock:
            copied: dict[str, dict[str, Any]] = json.loads(json.dumps(
                self.clusters[cluster].backups))
            return copied

    def add_schedule(self, fields: dict[str, Any], *, cluster: str = DEFAULT_CLUSTER,
                     schedule_id: str | None = None, last_run: str = "") -> str:
        """A schedule made in OpsCenter itself (its UI), not through the API under test."""
        with self._lock:
            schedule_id = schedule_id or str(uuid.uuid4())
            found = self.clusters[cluster]
            found.schedules[schedule_id] = {**fields, "id": schedule_id, "last_run": last_run}
            found.armed[schedule_id] = self.now()
            return schedule_id

    def add_backup(self, tag: str, entry: dict[str, Any], *,
                   cluster: str = DEFAULT_CLUSTER) -> None:
        with self._lock:
            self.clusters[cluster].backups[tag] = entry

    def remove_schedule(self, schedule_id: str, *, cluster: str = DEFAULT_CLUSTER) -> None:
        """Delete a schedule behind the operator's back, as a person in the OpsCenter UI."""
        with self._lock:
            del self.clusters[cluster].schedules[schedule_id]

    def fail_node(self, node: str, error: str, *, cluster: str = DEFAULT_CLUSTER) -> None:
        """Snapshots on ``node`` fail with ``error`` until ``heal_node``."""
        with self._lock:
            self.clusters[cluster].failing[node] = error

    def heal_node(self, node: str, *, cluster: str = DEFAULT_CLUSTER) -> None:
        with self._lock:
            self.clusters[cluster].failing.pop(node, None)

    def expire_sessions(self, *, for_good: bool = False) -> None:
        """Every session handed out so far stops working (401 until the next login);
        ``for_good``: new sessions are refused as well, until ``clear_faults``."""
        with self._lock:
            self._sessions.clear()
            self._refuse_sessions = for_good

    def fail(self, status: int = 500, *, method: str | None = None, path: str | None = None,
             times: int | None = None) -> None:
        """Answer matching requests with ``status`` and an error body, doing nothing else."""
        self._add_fault(_Fault("status", method, path, times, status=status))

    def slow(self, seconds: float, *, method: str | None = None, path: str | None = None,
             times: int | None = None) -> None:
        """Carry out matching requests, then hold the answer back for ``seconds``."""
        self._add_fault(_Fault("slow", method, path, times, seconds=seconds))

    def malformed(self, *, method: str | None = None, path: str | None = None,
                  times: int | None = None) -> None:
        """Carry out matching requests, then answer with a body that is not JSON."""
        self._add_fault(_Fault("malformed", method, path, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._refuse_sessions = False

    def _add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, method: str | None = None, path: str = "") -> list[Recorded]:
        """Recorded requests with this method (any, if None) whose path contains ``path``."""
        return [r for r in self.requests
                if (method is None or r.method == method) and path in r.path]

    # The HTTP side.

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        with self._lock:
            self._requests.append(Recorded(
                method=request.method, path=request.path, json=body,
                headers={key.lower(): value for key, value in request.headers.items()}))
            fault = self._take_fault(request.method, request.path)
        if fault is not None and fault.kind == "status":
            return OpsCenterFailure(fault.status, "Internal error",
                                    f"OpsCenter failed while handling {request.method} "
                                    f"{request.path}", "InternalServerError").response()
        try:
            if request.path != "/login":
                self._authorize(request)
            response = await handler(request)
        except OpsCenterFailure as failure:
            response = failure.response()
        except web.HTTPNotFound:
            response = OpsCenterFailure(404, "Not found", f"no such API path: {request.path}",
                                        "NotFound").response()
        except web.HTTPMethodNotAllowed:
            response = OpsCenterFailure(405, "Method not allowed",
                                        f"{request.method} is not allowed on {request.path}",
                                        "MethodNotAllowed").response()
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "malformed":
            return web.Response(status=getattr(response, "status", 200),
                                body=b'{"first_run_date": "2012-04-',
                                content_type="application/json")
        return response

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _authorize(self, request: web.Request) -> None:
        if self.users is None:
            return
        session = request.headers.get(SESSION_HEADER)
        with self._lock:
            valid = session in self._sessions and not self._refuse_sessions
        if valid:
            return
        # OpsCenter names the refused session: clients must not pass that on.
        message = (f"session {session} is not valid or has expired; log in again"
                   if session else "log in first with POST /login")
        raise OpsCenterFailure(401, "Not authorized", message, "NotAuthorized")

    async def _login(self, request: web.Request) -> web.Response:
        body = _body(await request.read())
        if not isinstance(body, dict):
            raise OpsCenterFailure(400, "Bad request", "send {\"username\", \"password\"}",
                                   "BadRequest")
        username, password = body.get("username"), body.get("password")
        if self.users is not None and (
                not isinstance(username, str) or self.users.get(username) != password):
            raise OpsCenterFailure(401, "Login failed", "wrong username or password",
                                   "AuthenticationFailed")
        session = secrets.token_hex(16)
        with self._lock:
            self._sessions.add(session)
            self.sessions_issued.append(session)
        return _json({"sessionid": session})

    def _cluster(self, request: web.Request) -> FakeCluster:
        name = request.match_info["cluster"]
        found = self.clusters.get(name)
        if found is None:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise OpsCenterFailure(404, f"Unknown cluster {name}",
                                   f"there is no cluster named {name} in OpsCenter (known "
                                   f"clusters: {known})", "UnknownCluster")
        return found

    def _schedule(self, cluster: FakeCluster, request: web.Request) -> dict[str, Any]:
        schedule_id = request.match_info["id"]
        found = cluster.schedules.get(schedule_id)
        if found is None:
            raise OpsCenterFailure(404, "Job schedule not found",
                                   f"no job schedule with id {schedule_id}", "NotFound")
        return found

    async def _list_schedules(self, request: web.Request) -> web.Response:
        with self._lock:
            cluster = self._cluster(request)
            return _json([self._shown(fields) for fields in cluster.schedules.values()])

    async def _get_schedule(self, request: web.Request) -> web.Response:
        with self._lock:
            return _json(self._shown(self._schedule(self._cluster(request), request)))

    async def _create_schedule(self, request: web.Request) -> web.Response:
        body = _body(await request.read())
        with self._lock:
            cluster = self._cluster(request)
            fields = _checked_schedule(body)
            schedule_id = str(uuid.uuid4())
            cluster.schedules[schedule_id] = {**fields, "id": schedule_id, "last_run": ""}
            cluster.armed[schedule_id] = self.now()
        return _json(schedule_id, status=201)

    async def _modify_schedule(self, request: web.Request) -> web.Response:
        body = _body(await request.read())
        with self._lock:
            cluster = self._cluster(request)
            current = self._schedule(cluster, request)
            if not isinstance(body, dict):
                raise OpsCenterFailure(400, "Invalid job schedule",
                                       "the body must be a JSON object", "BadRequest")
            changes = {k: v for k, v in body.items() if k not in ("id", "last_run", "next_run")}
            merged = _checked_schedule({**current, **changes})
            current.update(merged)
            cluster.armed[current["id"]] = self.now()
        return _json(None)

    async def _delete_schedule(self, request: web.Request) -> web.Response:
        with self._lock:
            cluster = self._cluster(request)
            found = self._schedule(cluster, request)
            del cluster.schedules[found["id"]]
        return _json(None)

    async def _list_backups(self, request: web.Request) -> web.Response:
        with self._lock:
            return _json(self._cluster(request).backups)

    async def _list_keyspace_backups(self, request: web.Request) -> web.Response:
        keyspace = request.match_info["keyspace"]
        with self._lock:
            cluster = self._cluster(request)
            return _json({tag: {**entry, "keyspaces": {keyspace: entry["keyspaces"][keyspace]}}
                          for tag, entry in cluster.backups.items()
                          if keyspace in entry["keyspaces"]})

    async def _run_backup(self, request: web.Request) -> web.Response:
        body = _body(await request.read())
        with self._lock:
            cluster = self._cluster(request)
            wanted = body.get("keyspaces") if isinstance(body, dict) else None
            if not isinstance(wanted, dict):
                raise OpsCenterFailure(400, "Invalid backup request",
                                       "the body needs a \"keyspaces\" object", "BadRequest")
            unknown = sorted(set(wanted) - set(cluster.keyspaces))
            if unknown:
                raise OpsCenterFailure(400, "Unknown keyspace",
                                       f"cluster has no keyspace {', '.join(unknown)}",
                                       "BadRequest")
            plan: dict[str, list[str]] = {}
            for keyspace in wanted or list(cluster.keyspaces):
                entry = wanted.get(keyspace) or {}
                plan[keyspace] = list(entry.get("nodes") or cluster.nodes)
            answer, ok = [], set()
            for node in dict.fromkeys(node for nodes in plan.values() for node in nodes):
                error = (cluster.failing.get(node) if node in cluster.nodes
                         else f"{node} is not a node of this cluster")
                answer.append([error is None, [error, node]])
                if error is None:
                    ok.add(node)
            if ok:
                taken = self.now().replace(microsecond=0)
                while _tag(ADHOC_ID, taken) in cluster.backups:
                    taken += timedelta(seconds=1)
                cluster.backups[_tag(ADHOC_ID, taken)] = _entry(
                    cluster, ADHOC_ID, {ks: [n for n in nodes if n in ok]
                                        for ks, nodes in plan.items()}, taken)
        return _json(answer)

    # Schedules at work.

    def _shown(self, fields: dict[str, Any]) -> dict[str, Any]:
        upcoming = next_tick(fields, self.now())
        return {**fields, "next_run": display(fields, upcoming) if upcoming else ""}

    def _take_scheduled(self, cluster: FakeCluster, schedule_id: str, fields: dict[str, Any],
                        tick: datetime) -> list[str]:
        keyspaces = [ks for ks in (fields["job_params"].get("keyspaces") or cluster.keyspaces)
                     if ks in cluster.keyspaces]
        ok = [node for node in cluster.nodes if node not in cluster.failing]
        if not ok or not keyspaces:
            return []
        tag = _tag(schedule_id, tick)
        cluster.backups[tag] = _entry(cluster, schedule_id, {ks: ok for ks in keyspaces}, tick)
        if len(ok) == len(cluster.nodes):
            fields["last_run"] = display(fields, tick)
        return [tag]

    def _expire(self, cluster: FakeCluster, schedule_id: str, fields: dict[str, Any],
                now: datetime) -> None:
        params = fields["job_params"]
        amount, unit = params.get("cleanup_age"), params.get("cleanup_age_unit") or "days"
        if not amount:
            return
        step = UNITS.get(unit) or timedelta(days=CALENDAR_UNITS.get(unit, 1))
        cutoff = (now - amount * step).timestamp()
        for tag, entry in list(cluster.backups.items()):
            if entry["id"] == schedule_id and entry["time"] < cutoff:
                del cluster.backups[tag]


ADHOC_ID = "adhoc"


def _tag(schedule_id: str, taken: datetime) -> str:
    return f"opscenter_{schedule_id}_{taken.astimezone(UTC):%Y-%m-%d-%H-%M-%S}-UTC"


def _entry(cluster: FakeCluster, schedule_id: str, nodes: dict[str, list[str]],
           taken: datetime) -> dict[str, Any]:
    return {"id": schedule_id, "time": int(taken.timestamp()),
            "keyspaces": {ks: {"nodes": sorted(on), "size": cluster.keyspaces[ks] * len(on)}
                          for ks, on in sorted(nodes.items()) if on}}


def _body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise OpsCenterFailure(400, "Bad request", "the body is not JSON", "BadRequest") from None


def _checked_schedule(body: Any) -> dict[str, Any]:
    """The JobSchedule fields of a POST or merged PUT body; 400 with the field otherwise."""
    def bad(message: str) -> OpsCenterFailure:
        return OpsCenterFailure(400, "Invalid job schedule", message, "InvalidJobSchedule")

    if not isinstance(body, dict):
        raise bad("the body must be a JSON object")
    try:
        date.fromisoformat(str(body.get("first_run_date")))
    except ValueError:
        raise bad(f"first_run_date {body.get('first_run_date')!r} is not YYYY-MM-DD") from None
    try:
        time.fromisoformat(str(body.get("first_run_time")))
    except ValueError:
        raise bad(f"first_run_time {body.get('first_run_time')!r} is not hh:mm:ss") from None
    zone = body.get("timezone", "GMT")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise bad(f"timezone {zone!r} is not in /meta/timezones") from None
    interval, unit = body.get("interval"), body.get("interval_unit")
    if interval == -1:
        if unit is not None:
            raise bad("a one-time job (interval -1) takes interval_unit null")
    elif not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise bad(f"interval {interval!r} must be a positive number, or -1 for a one-time job")
    elif unit not in (*UNITS, *CALENDAR_UNITS):
        raise bad(f"interval_unit {unit!r} must be minutes, hours, days or weeks")
    params = body.get("job_params")
    if not isinstance(params, dict) or params.get("type") != "backup":
        raise bad("job_params.type must be backup")
    return {"first_run_date": body["first_run_date"], "first_run_time": body["first_run_time"],
            "timezone": zone, "interval": interval, "interval_unit": unit,
            "job_params": dict(params)}


# Tick arithmetic of a JobSchedule, written anew here so that the fake does not share
# the operator's mistakes.


def display(fields: dict[str, Any], instant: datetime) -> str:
    """``2012-04-19 18:00:00 GMT``: wall time in the schedule's zone, then the zone."""
    zone = str(fields.get("timezone") or "GMT")
    return f"{instant.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M:%S} {zone}"


def _tick(fields: dict[str, Any], index: int) -> datetime:
    zone = ZoneInfo(str(fields.get("timezone") or "GMT"))
    first_day = date.fromisoformat(fields["first_run_date"])
    wall = time.fromisoformat(fields["first_run_time"])
    unit, interval = fields.get("interval_unit"), int(fields["interval"])
    if unit in UNITS and index:
        first = datetime.combine(first_day, wall, tzinfo=zone).astimezone(UTC)
        return first + index * interval * UNITS[unit]
    days = index * interval * CALENDAR_UNITS.get(unit or "days", 1) if index else 0
    return datetime.combine(first_day + timedelta(days=days), wall,
                            tzinfo=zone).astimezone(UTC)


def _count_until(fields: dict[str, Any], instant: datetime) -> int:
    """How many ticks are at or before ``instant``."""
    first = _tick(fields, 0)
    if instant < first:
        return 0
    if int(fields["interval"]) == -1:
        return 1
    unit, interval = fields["interval_unit"], int(fields["interval"])
    if unit in UNITS:
        return (instant - first) // (interval * UNITS[unit]) + 1
    step = interval * CALENDAR_UNITS[unit]
    zone = ZoneInfo(str(fields.get("timezone") or "GMT"))
    local_day = instant.astimezone(zone).date()
    count = max(1, (local_day - date.fromisoformat(fields["first_run_date"])).days // step + 1)
    while count > 1 and _tick(fields, count - 1) > instant:
        count -= 1
    while _tick(fields, count) <= instant:
        count += 1
    return count


def latest_tick(fields: dict[str, Any], instant: datetime) -> datetime | None:
    count = _count_until(fields, instant)
    return _tick(fields, count - 1) if count else None


def next_tick(fields: dict[str, Any], instant: datetime) -> datetime | None:
    count = _count_until(fields, instant)
    if int(fields["interval"]) == -1 and count:
        return None
    return _tick(fields, count)


def self_signed_certificate(directory: Path, *, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``host`` and its key, made with openssl; the certificate is its
    own CA, so it is also what a client trusts."""
    cert, key = directory / "opscenter.crt", directory / "opscenter.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# The examples of opscenter-api-reference.txt, verbatim, for tests of the client and of
# this fake against the reference.

REFERENCE_SCHEDULE_ID = "19119720-115a-4f2c-862f-e10e1fb90eed"
REFERENCE_SCHEDULE: dict[str, Any] = {
    "first_run_date": "2012-04-19",
    "first_run_time": "18:00:00",
    "id": REFERENCE_SCHEDULE_ID,
    "interval": 1,
    "interval_unit": "days",
    "job_params": {"cleanup_age": 30, "cleanup_age_unit": "days", "keyspaces": [],
                   "type": "backup"},
    "last_run": "",
    "next_run": "2012-04-19 18:00:00 GMT",
    "timezone": "GMT",
}
REFERENCE_CREATE_BODY: dict[str, Any] = {
    "first_run_date": "2012-05-03",
    "first_run_time": "18:00:00",
    "interval": 1,
    "interval_unit": "days",
    "job_params": {"cleanup_age": 30, "cleanup_age_unit": "days", "keyspaces": [],
                   "type": "backup"},
    "timezone": "GMT",
}
REFERENCE_NEW_ID = "905391b7-1920-486d-a633-282f22dce604"
REFERENCE_MODIFY_BODY: dict[str, Any] = {"first_run_date": "2012-05-05",
                                         "first_run_time": "19:00:00"}
REFERENCE_BACKUPS: dict[str, Any] = {
    "opscenter_adhoc_2012-04-19-17-41-12-UTC": {
        "id": "adhoc",
        "keyspaces": {
            "OpsCenter": {"nodes": ["127.0.0.1"], "size": 23180},
            "system": {"nodes": ["127.0.0.1"], "size": 48961},
            "test": {"nodes": ["127.0.0.1"], "size": 4543},
        },
        "time": 1334857272,
    }
}
REFERENCE_KEYSPACE_BACKUPS: dict[str, Any] = {
    "opscenter_adhoc_2012-04-18-15-06-47-UTC": {
        "id": "adhoc",
        "keyspaces": {"movies_ks": {"nodes": ["10.11.12.150", "10.11.12.152"], "size": 14833}},
        "time": 1334761607,
    }
}
REFERENCE_RUN_BODY: dict[str, Any] = {
    "keyspaces": {"test": {"nodes": ["10.11.12.150", "10.11.12.152"], "size": 29644}}}
REFERENCE_RUN_ANSWER: list[Any] = [[True, [None, "10.11.12.150"]], [True, [None, "10.11.12.152"]]]
