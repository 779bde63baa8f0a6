"""The operator's sidecar client: what it sends, what it returns, and the errors a person reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from cassandra_backup.sidecar.client import SidecarClient, SidecarError

TOKEN = "client-token-77aa"
NODE = "http://127.0.0.1:9105"
RESULT = {
    "tag": "nightly",
    "keyspaces": ["ks1"],
    "sizeBytes": 4543,
    "keyspaceSizes": {"ks1": 4543},
    "createdAt": "2012-05-03T18:00:00.000Z",
    "created": True,
}

Responder = Callable[[httpx.Request], httpx.Response]


def _client(responder: Responder) -> SidecarClient:
    return SidecarClient(base_url=NODE, token=TOKEN, transport=httpx.MockTransport(responder))


async def test_take_snapshot_posts_tag_and_keyspaces_with_the_token() -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=RESULT)

    async with _client(respond) as client:
        result = await client.take_snapshot(tag="nightly", keyspaces=("ks1",))

    assert (seen[0].method, seen[0].url) == ("POST", httpx.URL(f"{NODE}/v1/snapshots"))
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen[0].content) == {"tag": "nightly", "keyspaces": ["ks1"]}
    assert result.created is True
    assert result.size_bytes == 4543
    assert result.keyspace_sizes == {"ks1": 4543}
    assert result.created_at == datetime(2012, 5, 3, 18, 0, tzinfo=UTC)


async def test_existing_snapshot_answer_is_a_result_too() -> None:
    async with _client(lambda _: httpx.Response(200, json={**RESULT, "created": False})) as client:
        result = await client.take_snapshot(tag="nightly", keyspaces=["ks1"])

    assert result.created is False


async def test_conflict_names_the_node_and_the_sidecar_error() -> None:
    error_text = "snapshot 'nightly' already exists on this node with keyspaces ks2, not ks1"

    async with _client(lambda _: httpx.Response(409, json={"error": error_text})) as client:
        with pytest.raises(SidecarError) as caught:
            await client.take_snapshot(tag="nightly", keyspaces=["ks1"])

    assert caught.value.status == 409
    assert str(caught.value) == (
        f"sidecar at {NODE} refused snapshot 'nightly' (HTTP 409): {error_text}"
    )


async def test_cassandra_down_says_so() -> None:
    error_text = "Cassandra is not reachable over JMX at 127.0.0.1:7199: nodetool: Failed"

    async with _client(lambda _: httpx.Response(503, json={"error": error_text})) as client:
        with pytest.raises(SidecarError) as caught:
            await client.take_snapshot(tag="nightly", keyspaces=[])

    assert caught.value.status == 503
    assert str(caught.value) == (
        f"sidecar at {NODE} cannot reach Cassandra for snapshot 'nightly' (HTTP 503): {error_text}"
    )


async def test_rejected_token_tells_what_to_check_without_showing_it() -> None:
    async with _client(lambda _: httpx.Response(401, json={"error": "wrong token"})) as client:
        with pytest.raises(SidecarError) as caught:
            await client.list_snapshots()

    assert caught.value.status == 401
    assert "refused the bearer token for the snapshot listing (HTTP 401)" in str(caught.value)
    assert "token Secret" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_error_without_json_body_keeps_the_text() -> None:
    async with _client(lambda _: httpx.Response(502, text="Bad Gateway from proxy")) as client:
        with pytest.raises(SidecarError) as caught:
            await client.list_snapshots()

    assert str(caught.value) == (
        f"sidecar at {NODE} failed the snapshot listing (HTTP 502): Bad Gateway from proxy"
    )


async def test_timeout_has_no_status_and_names_the_wait() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = SidecarClient(
        base_url=NODE, token=TOKEN, timeout=2.5, transport=httpx.MockTransport(respond)
    )
    async with client:
        with pytest.raises(SidecarError) as caught:
            await client.take_snapshot(tag="nightly", keyspaces=["ks1"])

    assert caught.value.status is None
    assert str(caught.value) == (
        f"sidecar at {NODE} did not answer POST /v1/snapshots within 2.5 s"
    )


async def test_unreachable_node_has_no_status() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with _client(respond) as client:
        with pytest.raises(SidecarError) as caught:
            await client.ready()

    assert caught.value.status is None
    assert str(caught.value) == (
        f"cannot reach sidecar at {NODE} for GET /readyz: [Errno 111] Connection refused"
    )


async def test_unreadable_answer_is_an_error_not_a_crash() -> None:
    async with _client(lambda _: httpx.Response(201, json={"tag": "nightly"})) as client:
        with pytest.raises(SidecarError) as caught:
            await client.take_snapshot(tag="nightly", keyspaces=[])

    assert caught.value.status == 201
    assert "sent an answer this client cannot read" in str(caught.value)


async def test_listing_returns_each_snapshot() -> None:
    listing = {"snapshots": [{k: v for k, v in RESULT.items() if k != "created"}]}

    async with _client(lambda _: httpx.Response(200, json=listing)) as client:
        snapshots = await client.list_snapshots()

    assert [(s.tag, s.keyspaces, s.size_bytes) for s in snapshots] == [("nightly", ["ks1"], 4543)]


@pytest.mark.parametrize(("status", "cleared"), [(204, True), (404, False)])
async def test_clear_snapshot_tells_whether_anything_was_cleared(
    status: int, cleared: bool
) -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"error": "x"} if status == 404 else None)

    async with _client(respond) as client:
        assert await client.clear_snapshot("nightly") is cleared

    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/v1/snapshots/nightly")


async def test_clear_snapshot_refuses_a_tag_that_would_change_the_path() -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async with _client(respond) as client:
        with pytest.raises(SidecarError) as caught:
            await client.clear_snapshot("../healthz")

    assert "is not a valid snapshot tag" in str(caught.value)
    assert seen == []


async def test_clear_snapshot_failure_is_an_error() -> None:
    async with _client(lambda _: httpx.Response(500, json={"error": "disk full"})) as client:
        with pytest.raises(SidecarError) as caught:
            await client.clear_snapshot("nightly")

    assert str(caught.value) == (
        f"sidecar at {NODE} failed clearing snapshot 'nightly' (HTTP 500): disk full"
    )


@pytest.mark.parametrize(("status", "ready"), [(200, True), (503, False)])
async def test_ready_reflects_readyz(status: int, ready: bool) -> None:
    async with _client(lambda _: httpx.Response(status, json={})) as client:
        assert await client.ready() is ready


async def test_trailing_slash_in_base_url_does_not_double_up() -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"snapshots": []})

    client = SidecarClient(base_url=f"{NODE}/", token=TOKEN, transport=httpx.MockTransport(respond))
    async with client:
        assert await client.list_snapshots() == []

    assert str(seen[0].url) == f"{NODE}/v1/snapshots"
