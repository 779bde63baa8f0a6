"""The OpsCenter client: the request each reference example makes, how its answer lands,
and what a person reads when OpsCenter fails."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cassandra_backup import models
from cassandra_backup.opscenter.client import Credentials, OpsCenterClient, RetryPolicy
from cassandra_backup.opscenter.errors import (
    OpsCenterBadAnswer,
    OpsCenterLoginFailed,
    OpsCenterNotFound,
    OpsCenterRefused,
    OpsCenterUnavailable,
)
from cassandra_backup.opscenter.mapping import NodeOutcome
from support.fake_opscenter import (
    REFERENCE_BACKUPS,
    REFERENCE_CREATE_BODY,
    REFERENCE_KEYSPACE_BACKUPS,
    REFERENCE_MODIFY_BODY,
    REFERENCE_NEW_ID,
    REFERENCE_RUN_ANSWER,
    REFERENCE_SCHEDULE,
    REFERENCE_SCHEDULE_ID,
    FakeOpsCenter,
    self_signed_certificate,
    server_context,
)

BASE = "http://127.0.0.1:8888"
PASSWORD = "pa55-word-never-shown"
SESSION = "5e55104-never-shown"
Responder = Callable[[httpx.Request], httpx.Response]


class Waits:
    """Stands in for asyncio.sleep: records back-off waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _client(responder: Responder, *, credentials: Credentials | None = None,
            waits: Waits | None = None, attempts: int = 4) -> OpsCenterClient:
    return OpsCenterClient(base_url=BASE, credentials=credentials,
                           transport=httpx.MockTransport(responder), sleep=waits or Waits(),
                           retry=RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=8.0))


class Seen:
    """A responder that answers with fixed responses in turn and keeps the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def body(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)

    def line(self, index: int = 0) -> tuple[str, str]:
        request = self.requests[index]
        return request.method, request.url.path


# The reference examples, one by one.


async def test_listing_job_schedules_gets_the_cluster_path_and_reads_the_list() -> None:
    seen = Seen(httpx.Response(200, json=[REFERENCE_SCHEDULE]))

    async with _client(seen) as client:
        schedules = await client.list_schedules("Test_Cluster")

    assert seen.line() == ("GET", "/Test_Cluster/job-schedules")
    assert [s.id for s in schedules] == [REFERENCE_SCHEDULE_ID]
    assert schedules[0].next_run == "2012-04-19 18:00:00 GMT"
    assert schedules[0].fields["intervalUnit"] == "days"


async def test_getting_one_job_schedule_reads_its_fields_and_run_times() -> None:
    seen = Seen(httpx.Response(200, json=REFERENCE_SCHEDULE))

    async with _client(seen) as client:
        found = await client.get_schedule("Test_Cluster", REFERENCE_SCHEDULE_ID)

    assert seen.line() == ("GET", f"/Test_Cluster/job-schedules/{REFERENCE_SCHEDULE_ID}")
    assert found.id == REFERENCE_SCHEDULE_ID
    assert found.last_run == ""
    assert found.fields["firstRunDate"] == "2012-04-19"
    assert found.fields["jobParams"] == {"cleanupAge": 30, "cleanupAgeUnit": "days",
                                         "keyspaces": [], "type": "backup"}


async def test_creating_a_job_schedule_posts_the_body_and_returns_the_id_string() -> None:
    seen = Seen(httpx.Response(201, json=REFERENCE_NEW_ID))

    async with _client(seen) as client:
        new_id = await client.create_schedule("Test_Cluster", REFERENCE_CREATE_BODY)

    assert seen.line() == ("POST", "/Test_Cluster/job-schedules/")
    assert seen.body() == REFERENCE_CREATE_BODY
    assert seen.requests[0].headers["content-type"] == "application/json"
    assert new_id == "905391b7-1920-486d-a633-282f22dce604"


async def test_modifying_a_job_schedule_puts_the_fields_and_accepts_null() -> None:
    seen = Seen(httpx.Response(200, content=b"null"))

    async with _client(seen) as client:
        await client.modify_schedule("Test_Cluster", REFERENCE_NEW_ID, REFERENCE_MODIFY_BODY)

    assert seen.line() == ("PUT", f"/Test_Cluster/job-schedules/{REFERENCE_NEW_ID}")
    assert seen.body() == {"first_run_date": "2012-05-05", "first_run_time": "19:00:00"}


async def test_deleting_a_job_schedule_sends_delete_and_takes_null() -> None:
    seen = Seen(httpx.Response(200, content=b"null"))

    async with _client(seen) as client:
        await client.delete_schedule("Test_Cluster", REFERENCE_NEW_ID)

    assert seen.line() == ("DELETE", f"/Test_Cluster/job-schedules/{REFERENCE_NEW_ID}")
    assert seen.requests[0].content == b""


async def test_listing_backups_reads_the_dictionary_keyed_by_tag() -> None:
    seen = Seen(httpx.Response(200, json=REFERENCE_BACKUPS))

    async with _client(seen) as client:
        backups = await client.list_backups("Test_Cluster")

    assert seen.line() == ("GET", "/Test_Cluster/backups")
    assert list(backups) == ["opscenter_adhoc_2012-04-19-17-41-12-UTC"]
    backup = backups["opscenter_adhoc_2012-04-19-17-41-12-UTC"]
    assert backup.schedule_id == "adhoc"
    assert sorted(backup.keyspaces) == ["OpsCenter", "system", "test"]
    assert backup.keyspaces["system"].size == 48961


async def test_listing_backups_of_a_keyspace_uses_its_name_in_the_path() -> None:
    seen = Seen(httpx.Response(200, json=REFERENCE_KEYSPACE_BACKUPS))

    async with _client(seen) as client:
        backups = await client.list_keyspace_backups("Test_Cluster", "movies_ks")

    assert seen.line() == ("GET", "/Test_Cluster/backups/movies_ks")
    assert backups["opscenter_adhoc_2012-04-18-15-06-47-UTC"].nodes == [
        "10.11.12.150", "10.11.12.152"]


async def test_running_a_backup_posts_keyspaces_with_nodes_and_reads_each_node() -> None:
    seen = Seen(httpx.Response(200, json=REFERENCE_RUN_ANSWER))
    nodes = ["10.11.12.150", "10.11.12.152"]

    async with _client(seen) as client:
        outcomes = await client.run_backup("Test_Cluster",
                                           {"test": models.RunKeyspace(nodes=nodes)})

    assert seen.line() == ("POST", "/Test_Cluster/backups/run")
    assert seen.body() == {"keyspaces": {"test": {"nodes": nodes}}}
    assert outcomes == [NodeOutcome(node=n, ok=True) for n in nodes]


async def test_names_that_are_not_url_safe_stay_one_path_segment() -> None:
    seen = Seen(httpx.Response(200, json=REFERENCE_SCHEDULE))

    async with _client(seen) as client:
        await client.get_schedule("Test_Cluster", "../../login")

    assert seen.requests[0].url.raw_path == b"/Test_Cluster/job-schedules/..%2F..%2Flogin"


# Sessions.


def _login_then(*answers: httpx.Response) -> Seen:
    return Seen(httpx.Response(200, json={"sessionid": SESSION}), *answers)


async def test_a_login_comes_first_and_its_session_goes_in_the_header() -> None:
    seen = _login_then(httpx.Response(200, json=[]))

    async with _client(seen, credentials=Credentials("admin", PASSWORD)) as client:
        await client.list_schedules("Test_Cluster")

    assert seen.line(0) == ("POST", "/login")
    assert seen.body(0) == {"username": "admin", "password": PASSWORD}
    assert "opscenter-session" not in seen.requests[0].headers
    assert seen.requests[1].headers["opscenter-session"] == SESSION


async def test_an_expired_session_is_followed_by_one_fresh_login() -> None:
    expired = httpx.Response(401, json={"brief": "Not authorized", "message": "expired",
                                        "type": "NotAuthorized"})
    seen = Seen(httpx.Response(200, json={"sessionid": "first"}), expired,
                httpx.Response(200, json={"sessionid": "second"}), httpx.Response(200, json=[]))

    async with _client(seen, credentials=Credentials("admin", PASSWORD)) as client:
        await client.list_schedules("Test_Cluster")
        logins = client.logins

    assert [seen.line(i)[1] for i in range(4)] == [
        "/login", "/Test_Cluster/job-schedules", "/login", "/Test_Cluster/job-schedules"]
    assert seen.requests[3].headers["opscenter-session"] == "second"
    assert logins == 2


async def test_a_second_401_right_after_a_fresh_login_is_an_error_not_a_loop() -> None:
    refused = httpx.Response(401, json={"brief": "Not authorized",
                                        "message": f"session {SESSION} is not valid",
                                        "type": "NotAuthorized"})
    seen = Seen(httpx.Response(200, json={"sessionid": SESSION}), refused,
                httpx.Response(200, json={"sessionid": SESSION}), refused)

    async with _client(seen, credentials=Credentials("admin", PASSWORD)) as client:
        with pytest.raises(OpsCenterLoginFailed) as caught:
            await client.list_schedules("Test_Cluster")

    assert len(seen.requests) == 4
    assert str(caught.value) == (
        f"OpsCenter at {BASE} refused GET /Test_Cluster/job-schedules (HTTP 401) even right "
        "after a fresh login: Not authorized: session [redacted] is not valid")
    assert SESSION not in repr(caught.value.body)


async def test_wrong_credentials_say_where_to_look_without_the_password() -> None:
    seen = Seen(httpx.Response(401, json={"brief": "Login failed",
                                          "message": f"wrong password {PASSWORD}",
                                          "type": "AuthenticationFailed"}))

    async with _client(seen, credentials=Credentials("admin", PASSWORD)) as client:
        with pytest.raises(OpsCenterLoginFailed) as caught:
            await client.list_backups("Test_Cluster")

    assert len(seen.requests) == 1, "a refused login is not retried"
    assert str(caught.value) == (
        f"OpsCenter at {BASE} refused the login (HTTP 401): Login failed: wrong password "
        "[redacted]; check the username and password in the credentials Secret")
    assert PASSWORD not in repr(Credentials("admin", PASSWORD))


async def test_a_401_without_credentials_names_the_missing_secret() -> None:
    seen = Seen(httpx.Response(401, json={"brief": "Not authorized", "message": "log in",
                                          "type": "NotAuthorized"}))

    async with _client(seen) as client:
        with pytest.raises(OpsCenterLoginFailed, match="credentialsSecret"):
            await client.list_backups("Test_Cluster")


# Failures.


async def test_a_5xx_is_retried_with_growing_jittered_waits_then_succeeds() -> None:
    failing = httpx.Response(503, json={"brief": "Busy", "message": "try later",
                                        "type": "Unavailable"})
    seen = Seen(failing, failing, failing, httpx.Response(200, json=REFERENCE_BACKUPS))
    waits = Waits()

    async with _client(seen, waits=waits) as client:
        backups = await client.list_backups("Test_Cluster")

    assert len(backups) == 1
    assert len(seen.requests) == 4
    assert len(waits.delays) == 3
    for retry, delay in enumerate(waits.delays):
        assert 0.5 * 2 ** retry / 2 <= delay <= 0.5 * 2 ** retry


async def test_a_5xx_that_persists_gives_up_after_the_bounded_attempts() -> None:
    seen = Seen(httpx.Response(500, json={"brief": "Internal error", "message": "boom",
                                          "type": "InternalServerError"}))

    async with _client(seen, attempts=3) as client:
        with pytest.raises(OpsCenterUnavailable) as caught:
            await client.get_schedule("Test_Cluster", REFERENCE_NEW_ID)

    assert len(seen.requests) == 3
    assert caught.value.transient
    assert str(caught.value) == (
        f"OpsCenter at {BASE} failed GET /Test_Cluster/job-schedules/{REFERENCE_NEW_ID} with "
        "HTTP 500: Internal error: boom (tried 3 times)")


async def test_timeouts_are_retried_and_then_say_how_long_was_waited() -> None:
    seen = Seen(httpx.ReadTimeout("timed out"))

    async with OpsCenterClient(base_url=BASE, transport=httpx.MockTransport(seen),
                               timeout=2.5, sleep=Waits()) as client:
        with pytest.raises(OpsCenterUnavailable) as caught:
            await client.list_schedules("Test_Cluster")

    assert len(seen.requests) == 4
    assert str(caught.value) == (
        f"OpsCenter at {BASE} did not answer GET /Test_Cluster/job-schedules within 2.5 s "
        "(tried 4 times)")


async def test_a_create_whose_answer_may_be_lost_is_not_repeated() -> None:
    for answer in (httpx.Response(502, text="bad gateway"), httpx.ReadTimeout("timed out")):
        seen = Seen(answer)
        async with _client(seen) as client:
            with pytest.raises(OpsCenterUnavailable):
                await client.create_schedule("Test_Cluster", REFERENCE_CREATE_BODY)
        assert len(seen.requests) == 1


async def test_a_create_that_never_connected_is_tried_again() -> None:
    seen = Seen(httpx.ConnectError("connection refused"),
                httpx.Response(201, json=REFERENCE_NEW_ID))

    async with _client(seen) as client:
        assert await client.create_schedule("Test_Cluster", REFERENCE_CREATE_BODY) == \
            REFERENCE_NEW_ID

    assert len(seen.requests) == 2


async def test_an_unknown_cluster_is_not_retried_and_carries_opscenters_words() -> None:
    seen = Seen(httpx.Response(404, json={
        "brief": "Unknown cluster Nope",
        "message": "there is no cluster named Nope in OpsCenter", "type": "UnknownCluster"}))

    async with _client(seen) as client:
        with pytest.raises(OpsCenterNotFound) as caught:
            await client.list_schedules("Nope")

    assert len(seen.requests) == 1
    assert not caught.value.transient
    assert caught.value.body is not None and caught.value.body.type == "UnknownCluster"
    assert str(caught.value) == (
        f"OpsCenter at {BASE} refused GET /Nope/job-schedules with HTTP 404 (UnknownCluster): "
        "Unknown cluster Nope: there is no cluster named Nope in OpsCenter")


async def test_a_bad_request_without_an_error_body_shows_the_text() -> None:
    seen = Seen(httpx.Response(400, text="keyspace nope does not exist"))

    async with _client(seen) as client:
        with pytest.raises(OpsCenterRefused) as caught:
            await client.run_backup("Test_Cluster", {"nope": models.RunKeyspace()})

    assert str(caught.value).endswith("with HTTP 400: keyspace nope does not exist")


async def test_malformed_json_is_a_bad_answer_that_names_the_request() -> None:
    seen = Seen(httpx.Response(200, content=b'{"first_run_date": "2012-04-'))

    async with _client(seen) as client:
        with pytest.raises(OpsCenterBadAnswer) as caught:
            await client.list_schedules("Test_Cluster")

    assert caught.value.transient
    assert str(caught.value).startswith(
        f"OpsCenter at {BASE} answered GET /Test_Cluster/job-schedules (HTTP 200) with a body "
        "that is not JSON")


async def test_json_of_the_wrong_shape_is_a_bad_answer() -> None:
    seen = Seen(httpx.Response(201, json={"id": REFERENCE_NEW_ID}))

    async with _client(seen) as client:
        with pytest.raises(OpsCenterBadAnswer, match="without the new job schedule id"):
            await client.create_schedule("Test_Cluster", REFERENCE_CREATE_BODY)


async def test_userinfo_in_the_url_never_shows_in_a_message() -> None:
    seen = Seen(httpx.Response(500, text="boom"))
    async with OpsCenterClient(base_url=f"http://admin:{PASSWORD}@127.0.0.1:8888",
                               transport=httpx.MockTransport(seen), sleep=Waits()) as client:
        with pytest.raises(OpsCenterUnavailable) as caught:
            await client.list_backups("Test_Cluster")

    assert PASSWORD not in str(caught.value)
    assert "http://127.0.0.1:8888" in str(caught.value)


# Over real HTTP, against the fake.


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path)


@pytest.fixture
def tls_fake(tls_files: tuple[Path, Path]) -> Iterator[FakeOpsCenter]:
    with FakeOpsCenter(users={"admin": PASSWORD},
                       ssl_context=server_context(*tls_files)) as fake:
        yield fake


async def test_tls_is_verified_against_the_ca_from_pem(tls_fake: FakeOpsCenter,
                                                       tls_files: tuple[Path, Path]) -> None:
    trust = ssl.create_default_context(cadata=tls_files[0].read_text())

    async with OpsCenterClient(base_url=tls_fake.url, credentials=Credentials("admin", PASSWORD),
                               verify=trust) as client:
        new_id = await client.create_schedule("Test_Cluster", REFERENCE_CREATE_BODY)

    assert tls_fake.url.startswith("https://")
    assert [s["id"] for s in tls_fake.schedules()] == [new_id]


async def test_tls_without_the_ca_is_refused_and_says_so(tls_fake: FakeOpsCenter) -> None:
    async with OpsCenterClient(base_url=tls_fake.url, sleep=Waits(),
                               credentials=Credentials("admin", PASSWORD)) as client:
        with pytest.raises(OpsCenterUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await client.list_schedules("Test_Cluster")

    assert tls_fake.requests == []


async def test_a_session_expiring_at_the_fake_costs_exactly_one_login() -> None:
    with FakeOpsCenter(users={"admin": PASSWORD}) as fake:
        async with OpsCenterClient(base_url=fake.url,
                                   credentials=Credentials("admin", PASSWORD)) as client:
            await client.list_schedules("Test_Cluster")
            fake.expire_sessions()
            await client.list_schedules("Test_Cluster")
            await client.list_schedules("Test_Cluster")

        paths = [(r.method, r.path) for r in fake.requests]
        assert paths == [("POST", "/login"), ("GET", "/Test_Cluster/job-schedules"),
                         ("GET", "/Test_Cluster/job-schedules"), ("POST", "/login"),
                         ("GET", "/Test_Cluster/job-schedules"),
                         ("GET", "/Test_Cluster/job-schedules")]
        assert fake.requests[2].headers["opscenter-session"] == fake.sessions_issued[0]
        assert fake.requests[4].headers["opscenter-session"] == fake.sessions_issued[1]


async def test_a_slow_fake_answer_is_a_timeout() -> None:
    with FakeOpsCenter() as fake:
        fake.slow(2.0)
        async with OpsCenterClient(base_url=fake.url, timeout=0.3, sleep=Waits(),
                                   retry=RetryPolicy(attempts=2)) as client:
            with pytest.raises(OpsCenterUnavailable, match=r"within 0\.3 s"):
                await client.list_backups("Test_Cluster")

        assert len(fake.requests_to("GET", "/backups")) == 2
