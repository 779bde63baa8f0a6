"""The sidecar's aiohttp application, served in process on 127.0.0.1 with the fake nodetool."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cassandra_backup.sidecar.api import openapi_document
from cassandra_backup.sidecar.client import SidecarClient, SidecarError
from cassandra_backup.sidecar.nodetool import Nodetool, NodetoolSettings
from cassandra_backup.sidecar.server import SidecarSettings, create_app
from support import fake_nodetool

TOKEN = "in-process-token-5e1f0c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMA = {"ks1": ["users", "events"], "ks2": ["orders"]}

Sidecar = Callable[..., AbstractAsyncContextManager[TestClient[Any, Any]]]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    fake_nodetool.seed_data_dir(data, SCHEMA)
    return data


@pytest.fixture
def nodetool_log(tmp_path: Path) -> Path:
    return tmp_path / "nodetool.log"


@pytest.fixture
def sidecar(tmp_path: Path, data_dir: Path, nodetool_log: Path) -> Sidecar:
    """Start the app with the fake nodetool; keyword arguments become FAKE_NODETOOL_* env."""
    launcher = fake_nodetool.install_launcher(tmp_path)

    @asynccontextmanager
    async def start(
        *, timeout_seconds: float = 60.0, **fake_env: str
    ) -> AsyncIterator[TestClient[Any, Any]]:
        settings = SidecarSettings(
            token=TOKEN,
            host="127.0.0.1",
            nodetool=NodetoolSettings(executable=str(launcher), timeout_seconds=timeout_seconds),
            data_dirs=(data_dir,),
        )
        environ = {
            "FAKE_NODETOOL_DATA_DIR": str(data_dir),
            "FAKE_NODETOOL_LOG": str(nodetool_log),
            **{f"FAKE_NODETOOL_{key.upper()}": value for key, value in fake_env.items()},
        }
        app = create_app(settings, nodetool=Nodetool(settings.nodetool, environ=environ))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield client

    return start


def nodetool_calls(log: Path, command: str) -> list[list[str]]:
    if not log.exists():
        return []
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [call for call in calls if len(call) > 4 and call[4] == command]


def snapshot_folders(data_dir: Path, tag: str) -> list[Path]:
    return list(data_dir.glob(f"*/*/snapshots/{tag}"))


def bytes_on_disk(data_dir: Path, tag: str, keyspace: str) -> int:
    return sum(
        path.stat().st_size
        for path in data_dir.glob(f"{keyspace}/*/snapshots/{tag}/**/*")
        if path.is_file()
    )


async def test_healthz_needs_no_token(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        response = await client.get("/healthz")

        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_readyz_is_200_when_nodetool_reaches_cassandra(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        response = await client.get("/readyz")

        assert response.status == 200
        assert await response.json() == {"status": "ready"}


async def test_readyz_is_503_with_the_reason_when_cassandra_is_down(sidecar: Sidecar) -> None:
    async with sidecar(down="1") as client:
        response = await client.get("/readyz")

        assert response.status == 503
        body = await response.json()
        assert body["error"].startswith("Cassandra is not reachable over JMX at 127.0.0.1:7199")
        assert "Failed to connect to '127.0.0.1:7199'" in body["error"]


async def test_readyz_answers_repeated_probes_from_one_nodetool_run(
    sidecar: Sidecar, nodetool_log: Path
) -> None:
    async with sidecar() as client:
        statuses = [(await client.get("/readyz")).status for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert len(nodetool_calls(nodetool_log, "version")) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="longer-token"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="other-scheme"),
        pytest.param({"Authorization": "Bearer"}, id="scheme-only"),
    ],
)
async def test_snapshots_need_the_bearer_token(sidecar: Sidecar, headers: dict[str, str]) -> None:
    async with sidecar() as client:
        response = await client.get("/v1/snapshots", headers=headers)

        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="cassandra-backup-sidecar"'
        assert (await response.json())["error"].startswith("missing or wrong bearer token")


async def test_unknown_path_without_token_is_401_not_404(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        response = await client.get("/v1/secrets")

        assert response.status == 401


async def test_unknown_path_is_a_json_404(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        response = await client.get("/v1/nothing", headers=AUTH)

        assert response.status == 404
        assert response.content_type == "application/json"
        assert await response.json() == {"error": "no such endpoint: GET /v1/nothing"}


async def test_wrong_method_is_a_json_405_naming_the_allowed_ones(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        response = await client.put("/v1/snapshots", headers=AUTH, json={})

        assert response.status == 405
        assert set(response.headers["Allow"].split(",")) >= {"GET", "POST"}
        assert (await response.json())["error"].startswith("PUT is not allowed on /v1/snapshots")


async def test_malformed_json_body_is_400(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        response = await client.post("/v1/snapshots", headers=AUTH, data=b'{"tag": "a"')

        assert response.status == 400
        assert (await response.json())["error"].startswith("request body is not valid JSON")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param({"tag": 5}, "tag: Input should be a valid string", id="number-tag"),
        pytest.param(
            {"tag": "t", "keyspaces": "ks1"},
            "keyspaces: Input should be a valid array",
            id="string-keyspaces",
        ),
        pytest.param({"keyspaces": []}, "tag: Field required", id="no-tag"),
    ],
)
async def test_wrong_types_are_400_naming_the_field(
    sidecar: Sidecar, body: dict[str, Any], error: str
) -> None:
    async with sidecar() as client:
        response = await client.post("/v1/snapshots", headers=AUTH, json=body)

        assert response.status == 400
        assert await response.json() == {"error": error}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"tag": "../etc", "keyspaces": ["ks1"]}, id="parent-tag"),
        pytest.param({"tag": "-rf", "keyspaces": ["ks1"]}, id="option-tag"),
        pytest.param({"tag": "a/b", "keyspaces": ["ks1"]}, id="slash-tag"),
        pytest.param({"tag": "..", "keyspaces": ["ks1"]}, id="dot-dot-tag"),
        pytest.param({"tag": "t", "keyspaces": ["--help"]}, id="option-keyspace"),
        pytest.param({"tag": "t", "keyspaces": ["ks1/../.."]}, id="path-keyspace"),
    ],
)
async def test_hostile_names_are_400_and_never_reach_nodetool(
    sidecar: Sidecar, nodetool_log: Path, body: dict[str, Any]
) -> None:
    async with sidecar() as client:
        response = await client.post("/v1/snapshots", headers=AUTH, json=body)

        assert response.status == 400
        assert "error" in await response.json()
    assert nodetool_calls(nodetool_log, "snapshot") == []


async def test_new_snapshot_is_201_with_sizes_from_disk(sidecar: Sidecar, data_dir: Path) -> None:
    async with sidecar() as client:
        response = await client.post(
            "/v1/snapshots", headers=AUTH, json={"tag": "nightly", "keyspaces": ["ks1", "ks2"]}
        )

        assert response.status == 201
        body = await response.json()

    ks1, ks2 = bytes_on_disk(data_dir, "nightly", "ks1"), bytes_on_disk(data_dir, "nightly", "ks2")
    assert ks1 > 2 * fake_nodetool.TABLE_FILES_BYTES
    assert body["tag"] == "nightly"
    assert body["keyspaces"] == ["ks1", "ks2"]
    assert body["keyspaceSizes"] == {"ks1": ks1, "ks2": ks2}
    assert body["sizeBytes"] == ks1 + ks2
    assert body["created"] is True
    assert body["createdAt"].endswith("Z")


async def test_repeated_snapshot_is_200_and_runs_nodetool_once(
    sidecar: Sidecar, nodetool_log: Path
) -> None:
    request = {"tag": "nightly", "keyspaces": ["ks1"]}
    async with sidecar() as client:
        first = await client.post("/v1/snapshots", headers=AUTH, json=request)
        second = await client.post("/v1/snapshots", headers=AUTH, json=request)

        assert (first.status, second.status) == (201, 200)
        first_body, second_body = await first.json(), await second.json()

    assert second_body == {**first_body, "created": False}
    assert nodetool_calls(nodetool_log, "snapshot") == [
        ["-h", "127.0.0.1", "-p", "7199", "snapshot", "-t", "nightly", "--", "ks1"]
    ]


async def test_concurrent_identical_snapshots_run_nodetool_once(
    sidecar: Sidecar, nodetool_log: Path
) -> None:
    request = {"tag": "nightly", "keyspaces": ["ks1"]}
    async with sidecar(delay="0.3") as client:
        responses = await asyncio.gather(
            *(client.post("/v1/snapshots", headers=AUTH, json=request) for _ in range(3))
        )

        assert sorted(response.status for response in responses) == [200, 200, 201]
    assert len(nodetool_calls(nodetool_log, "snapshot")) == 1


async def test_every_keyspace_snapshot_has_no_double_dash_and_repeats_as_200(
    sidecar: Sidecar, nodetool_log: Path
) -> None:
    async with sidecar() as client:
        first = await client.post("/v1/snapshots", headers=AUTH, json={"tag": "all"})
        second = await client.post(
            "/v1/snapshots", headers=AUTH, json={"tag": "all", "keyspaces": []}
        )

        assert (first.status, second.status) == (201, 200)
        assert (await first.json())["keyspaces"] == ["ks1", "ks2", "system", "system_schema"]
    assert nodetool_calls(nodetool_log, "snapshot") == [
        ["-h", "127.0.0.1", "-p", "7199", "snapshot", "-t", "all"]
    ]


async def test_same_tag_with_other_keyspaces_is_409(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        await client.post("/v1/snapshots", headers=AUTH, json={"tag": "t", "keyspaces": ["ks1"]})
        response = await client.post(
            "/v1/snapshots", headers=AUTH, json={"tag": "t", "keyspaces": ["ks2"]}
        )

        assert response.status == 409
        assert (await response.json())["error"] == (
            "snapshot 't' already exists on this node with keyspaces ks1, not ks2; "
            "use another tag or clear this one first"
        )


async def test_keyspace_cassandra_does_not_know_is_400(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        response = await client.post(
            "/v1/snapshots", headers=AUTH, json={"tag": "t", "keyspaces": ["nope"]}
        )

        assert response.status == 400
        assert await response.json() == {"error": "nodetool: Keyspace nope does not exist"}


async def test_snapshot_while_cassandra_is_down_is_503(sidecar: Sidecar) -> None:
    async with sidecar(down="1") as client:
        response = await client.post(
            "/v1/snapshots", headers=AUTH, json={"tag": "t", "keyspaces": ["ks1"]}
        )

        assert response.status == 503
        assert "Failed to connect to '127.0.0.1:7199'" in (await response.json())["error"]


async def test_snapshot_that_outlives_the_timeout_is_504(sidecar: Sidecar) -> None:
    async with sidecar(timeout_seconds=0.5, delay="30") as client:
        response = await client.post(
            "/v1/snapshots", headers=AUTH, json={"tag": "t", "keyspaces": ["ks1"]}
        )

        assert response.status == 504
        assert (await response.json())["error"].startswith(
            "nodetool snapshot did not finish within 0.5 s and was stopped"
        )


async def test_listing_shows_tags_with_keyspaces_and_bytes(
    sidecar: Sidecar, data_dir: Path
) -> None:
    async with sidecar() as client:
        await client.post("/v1/snapshots", headers=AUTH, json={"tag": "a", "keyspaces": ["ks2"]})
        response = await client.get("/v1/snapshots", headers=AUTH)

        assert response.status == 200
        body = await response.json()

    ks2 = bytes_on_disk(data_dir, "a", "ks2")
    assert [
        (s["tag"], s["keyspaces"], s["sizeBytes"], s["keyspaceSizes"]) for s in body["snapshots"]
    ] == [("a", ["ks2"], ks2, {"ks2": ks2})]


async def test_delete_is_204_then_404(sidecar: Sidecar, data_dir: Path, nodetool_log: Path) -> None:
    async with sidecar() as client:
        await client.post("/v1/snapshots", headers=AUTH, json={"tag": "t", "keyspaces": ["ks1"]})

        first = await client.delete("/v1/snapshots/t", headers=AUTH)
        second = await client.delete("/v1/snapshots/t", headers=AUTH)

        assert first.status == 204
        assert second.status == 404
        assert await second.json() == {"error": "no snapshot with tag 't' on this node"}
    assert snapshot_folders(data_dir, "t") == []
    assert nodetool_calls(nodetool_log, "clearsnapshot") == [
        ["-h", "127.0.0.1", "-p", "7199", "clearsnapshot", "-t", "t"]
    ]


@pytest.mark.parametrize("path", ["/v1/snapshots/-rf", "/v1/snapshots/a%2Fb"])
async def test_delete_with_a_hostile_tag_is_400(
    sidecar: Sidecar, nodetool_log: Path, path: str
) -> None:
    async with sidecar() as client:
        response = await client.delete(path, headers=AUTH)

        assert response.status == 400
    assert nodetool_calls(nodetool_log, "clearsnapshot") == []


async def test_openapi_document_is_public(sidecar: Sidecar) -> None:
    async with sidecar() as client:
        response = await client.get("/openapi.json")

        assert response.status == 200
        assert await response.json() == openapi_document()


async def test_token_never_reaches_the_log(
    sidecar: Sidecar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with sidecar() as client:
        await client.get("/v1/snapshots", headers={"Authorization": f"Bearer {TOKEN}-wrong"})
        await client.post("/v1/snapshots", headers=AUTH, json={"tag": "t", "keyspaces": ["ks1"]})
        await client.delete("/v1/snapshots/t", headers=AUTH)

    assert "snapshot t taken" in caplog.text
    assert TOKEN not in caplog.text


async def test_client_speaks_to_the_server(sidecar: Sidecar) -> None:
    async with sidecar() as server:
        base_url = str(server.make_url("")).rstrip("/")
        async with SidecarClient(base_url=base_url, token=TOKEN) as client:
            assert await client.ready() is True
            taken = await client.take_snapshot(tag="nightly", keyspaces=["ks1"])
            again = await client.take_snapshot(tag="nightly", keyspaces=["ks1"])
            listed = await client.list_snapshots()
            with pytest.raises(SidecarError) as conflict:
                await client.take_snapshot(tag="nightly", keyspaces=["ks2"])
            cleared = await client.clear_snapshot("nightly")
            cleared_again = await client.clear_snapshot("nightly")

    assert (taken.created, again.created) == (True, False)
    assert again.size_bytes == taken.size_bytes
    assert [(s.tag, s.size_bytes) for s in listed] == [("nightly", taken.size_bytes)]
    assert conflict.value.status == 409
    assert (cleared, cleared_again) == (True, False)
