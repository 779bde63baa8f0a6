"""The fake OpsCenter answers as the reference's examples show, byte for byte where it matters,
and misbehaves on request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from support.fake_opscenter import (
    REFERENCE_BACKUPS,
    REFERENCE_CREATE_BODY,
    REFERENCE_KEYSPACE_BACKUPS,
    REFERENCE_MODIFY_BODY,
    REFERENCE_RUN_BODY,
    REFERENCE_SCHEDULE,
    REFERENCE_SCHEDULE_ID,
    FakeCluster,
    FakeOpsCenter,
)

BEFORE_FIRST_RUN = datetime(2012, 4, 19, 12, 0, tzinfo=UTC)
NODES = ["10.11.12.150", "10.11.12.152"]


@pytest.fixture
def fake() -> Iterator[FakeOpsCenter]:
    with FakeOpsCenter(now=BEFORE_FIRST_RUN) as running:
        yield running


@pytest.fixture
def http(fake: FakeOpsCenter) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=10, trust_env=False) as client:
        yield client


def _seed_reference_schedule(fake: FakeOpsCenter) -> None:
    fields = {k: v for k, v in REFERENCE_SCHEDULE.items()
              if k not in ("id", "last_run", "next_run")}
    fake.add_schedule(fields, schedule_id=REFERENCE_SCHEDULE_ID)


def test_the_schedule_listing_is_the_reference_example(fake: FakeOpsCenter,
                                                       http: httpx.Client) -> None:
    _seed_reference_schedule(fake)

    response = http.get("/Test_Cluster/job-schedules")

    assert response.status_code == 200
    assert response.json() == [REFERENCE_SCHEDULE]


def test_one_schedule_is_the_reference_example(fake: FakeOpsCenter, http: httpx.Client) -> None:
    _seed_reference_schedule(fake)

    response = http.get(f"/Test_Cluster/job-schedules/{REFERENCE_SCHEDULE_ID}")

    assert response.status_code == 200
    assert response.json() == REFERENCE_SCHEDULE
    assert list(response.json()) == sorted(REFERENCE_SCHEDULE), "keys in the example's order"


def test_create_answers_201_with_the_id_as_a_json_string(fake: FakeOpsCenter,
                                                         http: httpx.Client) -> None:
    response = http.post("/Test_Cluster/job-schedules/", json=REFERENCE_CREATE_BODY)

    assert response.status_code == 201
    assert response.text.startswith('"') and response.text.endswith('"')
    new_id = response.json()
    assert [s["id"] for s in fake.schedules()] == [new_id]
    shown = http.get(f"/Test_Cluster/job-schedules/{new_id}").json()
    assert shown == {**REFERENCE_CREATE_BODY, "id": new_id, "last_run": "",
                     "next_run": "2012-05-03 18:00:00 GMT"}


def test_a_one_time_job_takes_interval_minus_one_and_a_null_unit(http: httpx.Client) -> None:
    once = {**REFERENCE_CREATE_BODY, "interval": -1, "interval_unit": None}

    assert http.post("/Test_Cluster/job-schedules", json=once).status_code == 201
    refused = http.post("/Test_Cluster/job-schedules", json={**once, "interval_unit": "days"})
    assert refused.status_code == 400
    assert refused.json()["message"] == "a one-time job (interval -1) takes interval_unit null"


def test_modify_merges_the_fields_and_answers_null(fake: FakeOpsCenter,
                                                   http: httpx.Client) -> None:
    new_id = http.post("/Test_Cluster/job-schedules/", json=REFERENCE_CREATE_BODY).json()

    response = http.put(f"/Test_Cluster/job-schedules/{new_id}", json=REFERENCE_MODIFY_BODY)

    assert (response.status_code, response.text) == (200, "null")
    (shown,) = fake.schedules()
    assert (shown["first_run_date"], shown["first_run_time"]) == ("2012-05-05", "19:00:00")
    assert shown["job_params"] == REFERENCE_CREATE_BODY["job_params"]
    assert shown["next_run"] == "2012-05-05 19:00:00 GMT"


def test_delete_answers_null_and_then_the_id_is_unknown(fake: FakeOpsCenter,
                                                        http: httpx.Client) -> None:
    new_id = http.post("/Test_Cluster/job-schedules/", json=REFERENCE_CREATE_BODY).json()

    response = http.delete(f"/Test_Cluster/job-schedules/{new_id}")

    assert (response.status_code, response.text) == (200, "null")
    gone = http.get(f"/Test_Cluster/job-schedules/{new_id}")
    assert gone.status_code == 404
    assert gone.json() == {"brief": "Job schedule not found",
                           "message": f"no job schedule with id {new_id}", "type": "NotFound"}


def test_the_backup_listings_are_the_reference_examples(fake: FakeOpsCenter,
                                                        http: httpx.Client) -> None:
    for tag, entry in {**REFERENCE_BACKUPS, **REFERENCE_KEYSPACE_BACKUPS}.items():
        fake.add_backup(tag, entry)

    everything = http.get("/Test_Cluster/backups")
    movies = http.get("/Test_Cluster/backups/movies_ks")

    assert everything.status_code == movies.status_code == 200
    assert everything.json() == {**REFERENCE_BACKUPS, **REFERENCE_KEYSPACE_BACKUPS}
    assert movies.json() == REFERENCE_KEYSPACE_BACKUPS


def test_a_run_answers_one_ok_error_node_pair_per_node(fake: FakeOpsCenter,
                                                       http: httpx.Client) -> None:
    response = http.post("/Test_Cluster/backups/run", json=REFERENCE_RUN_BODY)

    assert response.status_code == 200
    assert response.json() == [[True, [None, "10.11.12.150"]], [True, [None, "10.11.12.152"]]]
    (tag,) = fake.backups()
    assert tag.startswith("opscenter_adhoc_2012-04-19-12-")
    entry = fake.backups()[tag]
    assert entry["id"] == "adhoc"
    assert entry["keyspaces"] == {"test": {"nodes": NODES, "size": 2 * 4543}}


def test_a_failing_node_answers_false_with_its_error_and_is_left_out(
        fake: FakeOpsCenter, http: httpx.Client) -> None:
    fake.fail_node("10.11.12.152", "No space left on device")

    answer = http.post("/Test_Cluster/backups/run", json=REFERENCE_RUN_BODY).json()

    assert answer == [[True, [None, "10.11.12.150"]],
                      [False, ["No space left on device", "10.11.12.152"]]]
    (entry,) = fake.backups().values()
    assert entry["keyspaces"]["test"]["nodes"] == ["10.11.12.150"]


def test_an_unknown_cluster_is_404_with_an_opscenter_error_body(http: httpx.Client) -> None:
    response = http.get("/Nope/job-schedules")

    assert response.status_code == 404
    assert response.json() == {
        "brief": "Unknown cluster Nope",
        "message": "there is no cluster named Nope in OpsCenter (known clusters: Test_Cluster)",
        "type": "UnknownCluster"}


def test_a_due_schedule_takes_a_backup_that_shows_in_the_listing_and_last_run(
        fake: FakeOpsCenter, http: httpx.Client) -> None:
    body = {**REFERENCE_CREATE_BODY, "first_run_date": "2012-04-19",
            "job_params": {"type": "backup", "keyspaces": ["test"]}}
    new_id = http.post("/Test_Cluster/job-schedules", json=body).json()

    assert fake.advance(timedelta(hours=5)) == []
    taken = fake.advance(timedelta(hours=1, seconds=1))

    assert taken == [f"opscenter_{new_id}_2012-04-19-18-00-00-UTC"]
    listing = http.get("/Test_Cluster/backups").json()
    assert listing[taken[0]] == {"id": new_id, "time": 1334858400,
                                 "keyspaces": {"test": {"nodes": NODES, "size": 2 * 4543}}}
    shown = http.get(f"/Test_Cluster/job-schedules/{new_id}").json()
    assert shown["last_run"] == "2012-04-19 18:00:00 GMT"
    assert shown["next_run"] == "2012-04-20 18:00:00 GMT"


def test_ticks_before_a_schedule_was_created_never_fire(fake: FakeOpsCenter,
                                                        http: httpx.Client) -> None:
    http.post("/Test_Cluster/job-schedules",
              json={**REFERENCE_CREATE_BODY, "first_run_date": "2012-01-01"})

    assert fake.take_due_backups() == []
    assert fake.backups() == {}


def test_retention_drops_backups_older_than_the_cleanup_age(fake: FakeOpsCenter,
                                                            http: httpx.Client) -> None:
    body = {**REFERENCE_CREATE_BODY, "first_run_date": "2012-04-19",
            "job_params": {"type": "backup", "keyspaces": ["test"], "cleanup_age": 2,
                           "cleanup_age_unit": "days"}}
    http.post("/Test_Cluster/job-schedules", json=body)

    first = fake.advance(timedelta(hours=6, seconds=1))
    second = fake.advance(timedelta(days=1))
    third = fake.advance(timedelta(days=1))

    assert sorted(fake.backups()) == sorted(second + third)
    assert first[0] not in fake.backups()


def test_sessions_are_required_and_expire_on_request() -> None:
    with FakeOpsCenter(users={"admin": "secret"}) as fake, \
            httpx.Client(base_url=fake.url, trust_env=False) as http:
        assert http.get("/Test_Cluster/backups").status_code == 401
        assert http.post("/login", json={"username": "admin", "password": "nope"}
                         ).status_code == 401
        session = http.post("/login", json={"username": "admin", "password": "secret"}
                            ).json()["sessionid"]
        headers = {"opscenter-session": session}
        assert http.get("/Test_Cluster/backups", headers=headers).status_code == 200

        fake.expire_sessions()
        expired = http.get("/Test_Cluster/backups", headers=headers)

        assert expired.status_code == 401
        assert expired.json()["type"] == "NotAuthorized"
        assert fake.sessions_issued == [session]


def test_faults_fail_a_number_of_matching_requests(fake: FakeOpsCenter,
                                                   http: httpx.Client) -> None:
    fake.fail(500, method="POST", path="/job-schedules", times=2)

    answers = [http.post("/Test_Cluster/job-schedules", json=REFERENCE_CREATE_BODY).status_code
               for _ in range(3)]

    assert answers == [500, 500, 201]
    assert len(fake.schedules()) == 1, "a failed request changes nothing"
    assert http.get("/Test_Cluster/backups").status_code == 200


def test_a_slow_answer_is_carried_out_before_it_is_late(fake: FakeOpsCenter) -> None:
    fake.slow(1.0, method="POST")

    with httpx.Client(base_url=fake.url, timeout=0.2, trust_env=False) as http, \
            pytest.raises(httpx.ReadTimeout):
        http.post("/Test_Cluster/job-schedules", json=REFERENCE_CREATE_BODY)

    assert len(fake.schedules()) == 1


def test_malformed_answers_are_not_json(fake: FakeOpsCenter, http: httpx.Client) -> None:
    fake.malformed(path="/backups", times=1)

    broken = http.get("/Test_Cluster/backups")

    with pytest.raises(ValueError):
        broken.json()
    assert http.get("/Test_Cluster/backups").json() == {}


def test_requests_are_recorded_with_method_path_body_and_headers(fake: FakeOpsCenter,
                                                                 http: httpx.Client) -> None:
    http.post("/Test_Cluster/backups/run", json=REFERENCE_RUN_BODY,
              headers={"opscenter-session": "abc"})

    (recorded,) = fake.requests
    assert (recorded.method, recorded.path) == ("POST", "/Test_Cluster/backups/run")
    assert recorded.json == REFERENCE_RUN_BODY
    assert recorded.headers["opscenter-session"] == "abc"


def test_clusters_can_be_shaped_for_a_test() -> None:
    cluster = FakeCluster(nodes=["127.0.0.1"], keyspaces={"test": 4543})
    with FakeOpsCenter(clusters={"Other": cluster}) as fake, \
            httpx.Client(base_url=fake.url, trust_env=False) as http:
        answer = http.post("/Other/backups/run", json={"keyspaces": {}}).json()

    assert answer == [[True, [None, "127.0.0.1"]]]
