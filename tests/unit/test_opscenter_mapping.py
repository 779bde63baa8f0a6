"""camelCase resource fields to OpsCenter's wire names and back, and OpsCenter's answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cassandra_backup import models
from cassandra_backup.opscenter import mapping
from support.fake_opscenter import (
    REFERENCE_BACKUPS,
    REFERENCE_CREATE_BODY,
    REFERENCE_KEYSPACE_BACKUPS,
    REFERENCE_RUN_ANSWER,
    REFERENCE_SCHEDULE,
)

CLUSTER = {"name": "Test_Cluster", "opscenter": {"url": "http://127.0.0.1:8888"}}


def _spec(**fields: Any) -> models.BackupScheduleSpec:
    return models.BackupScheduleSpec.model_validate({
        "cluster": CLUSTER, "firstRunDate": "2012-05-03", "firstRunTime": "18:00:00",
        "timezone": "GMT", "interval": 1, "intervalUnit": "days",
        "jobParams": {"type": "backup", "keyspaces": [], "cleanupAge": 30,
                      "cleanupAgeUnit": "days"}, **fields})


def test_the_reference_create_example_is_exactly_the_body_of_its_spec() -> None:
    assert mapping.schedule_body(_spec()) == REFERENCE_CREATE_BODY


def test_a_one_time_job_is_interval_minus_one_with_a_null_unit() -> None:
    body = mapping.schedule_body(_spec(interval=-1, intervalUnit=None))

    assert body["interval"] == -1
    assert "interval_unit" in body
    assert body["interval_unit"] is None


def test_without_retention_no_cleanup_fields_are_sent() -> None:
    body = mapping.schedule_body(_spec(jobParams={"keyspaces": ["test", "movies_ks"]}))

    assert body["job_params"] == {"type": "backup", "keyspaces": ["test", "movies_ks"]}


def test_wire_names_translate_back_to_the_spec_fields() -> None:
    fields = mapping.from_wire(REFERENCE_SCHEDULE)

    assert fields == {
        "firstRunDate": "2012-04-19", "firstRunTime": "18:00:00", "timezone": "GMT",
        "interval": 1, "intervalUnit": "days",
        "jobParams": {"cleanupAge": 30, "cleanupAgeUnit": "days", "keyspaces": [],
                      "type": "backup"},
    }
    assert mapping.to_wire(fields) == {k: v for k, v in REFERENCE_SCHEDULE.items()
                                       if k not in ("id", "last_run", "next_run")}


def test_the_reference_schedule_reads_with_its_id_and_run_times() -> None:
    job = mapping.JobSchedule.parse(REFERENCE_SCHEDULE)

    assert job.id == "19119720-115a-4f2c-862f-e10e1fb90eed"
    assert job.last_run == ""
    assert job.next_run == "2012-04-19 18:00:00 GMT"
    assert job.fields["jobParams"]["cleanupAge"] == 30


def test_a_schedule_without_an_id_cannot_be_read() -> None:
    with pytest.raises(ValueError, match="no string id"):
        mapping.JobSchedule.parse({k: v for k, v in REFERENCE_SCHEDULE.items() if k != "id"})


@pytest.mark.parametrize(("change", "same"), [
    pytest.param({}, True, id="identical"),
    pytest.param({"job_params": {"type": "backup", "keyspaces": [], "cleanup_age": 30,
                                 "cleanup_age_unit": "days"}}, True, id="param-order"),
    pytest.param({"first_run_time": "19:00:00"}, False, id="other-time"),
    pytest.param({"timezone": "US/Central"}, False, id="other-zone"),
    pytest.param({"job_params": {"type": "backup", "keyspaces": ["test"], "cleanup_age": 30,
                                 "cleanup_age_unit": "days"}}, False, id="other-keyspaces"),
])
def test_a_lost_post_is_recognised_by_its_fields_only(change: dict[str, Any],
                                                      same: bool) -> None:
    listed = mapping.JobSchedule.parse({**REFERENCE_CREATE_BODY, "id": "x", "last_run": "",
                                        "next_run": "", **change})

    assert mapping.same_schedule(REFERENCE_CREATE_BODY, listed) is same


def test_keyspace_order_does_not_make_another_schedule() -> None:
    body = mapping.schedule_body(_spec(jobParams={"keyspaces": ["b", "a"]}))
    listed = mapping.JobSchedule.parse({**body, "id": "x",
                                        "job_params": {"type": "backup", "keyspaces": ["a", "b"]}})

    assert mapping.same_schedule(body, listed)


def test_the_reference_backup_listing_reads_keyed_by_tag() -> None:
    backups = mapping.parse_backups(REFERENCE_BACKUPS)

    backup = backups["opscenter_adhoc_2012-04-19-17-41-12-UTC"]
    assert backup.schedule_id == "adhoc"
    assert backup.time == datetime(2012, 4, 19, 17, 41, 12, tzinfo=UTC)
    assert backup.nodes == ["127.0.0.1"]
    assert backup.keyspaces["test"] == models.RunKeyspace(nodes=["127.0.0.1"], size=4543)
    assert backup.size_bytes == 23180 + 48961 + 4543


def test_the_reference_keyspace_listing_reads_both_nodes() -> None:
    backups = mapping.parse_backups(REFERENCE_KEYSPACE_BACKUPS)

    (backup,) = backups.values()
    assert backup.nodes == ["10.11.12.150", "10.11.12.152"]
    assert backup.keyspaces["movies_ks"].size == 14833


def test_a_listing_entry_without_a_time_cannot_be_read() -> None:
    with pytest.raises(ValueError, match="no numeric time"):
        mapping.parse_backups({"t": {"id": "adhoc", "keyspaces": {}}})


def test_the_run_body_has_the_reference_shape() -> None:
    body = mapping.run_body({"test": models.RunKeyspace(nodes=["10.11.12.150",
                                                                "10.11.12.152"])})

    assert body == {"keyspaces": {"test": {"nodes": ["10.11.12.150", "10.11.12.152"]}}}


def test_a_keyspace_without_nodes_is_sent_for_every_node() -> None:
    assert mapping.run_body({"test": models.RunKeyspace()}) == {"keyspaces": {"test": {}}}


def test_the_reference_run_answer_is_one_success_per_node() -> None:
    assert mapping.parse_run_answer(REFERENCE_RUN_ANSWER) == [
        mapping.NodeOutcome(node="10.11.12.150", ok=True),
        mapping.NodeOutcome(node="10.11.12.152", ok=True),
    ]


def test_a_failed_node_carries_its_error() -> None:
    answer = [[True, [None, "10.11.12.150"]], [False, ["disk full", "10.11.12.152"]]]

    assert mapping.parse_run_answer(answer)[1] == mapping.NodeOutcome(
        node="10.11.12.152", ok=False, error="disk full")


def test_a_lone_pair_and_a_bare_true_are_understood() -> None:
    assert mapping.parse_run_answer([True, [None, "10.11.12.150"]]) == [
        mapping.NodeOutcome(node="10.11.12.150", ok=True)]
    assert mapping.parse_run_answer(True) == []


def test_a_run_answer_of_another_shape_cannot_be_read() -> None:
    with pytest.raises(ValueError, match="pair"):
        mapping.parse_run_answer([["10.11.12.150", True]])


@pytest.mark.parametrize(("shown", "zone", "instant"), [
    pytest.param("2012-04-19 18:00:00 GMT", "GMT", datetime(2012, 4, 19, 18, 0, tzinfo=UTC),
                 id="reference"),
    pytest.param("2026-03-29 03:30:00 Europe/Berlin", "Europe/Berlin",
                 datetime(2026, 3, 29, 1, 30, tzinfo=UTC), id="iana-zone-after-dst"),
    pytest.param("2026-07-01 18:00:00 CEST", "Europe/Berlin",
                 datetime(2026, 7, 1, 16, 0, tzinfo=UTC), id="abbreviation-uses-spec-zone"),
    pytest.param("2026-10-25 02:30:00 Europe/Berlin", "Europe/Berlin",
                 datetime(2026, 10, 25, 0, 30, tzinfo=UTC), id="repeated-hour-first"),
    pytest.param("2012-04-19 18:00:00", "US/Central", datetime(2012, 4, 19, 23, 0, tzinfo=UTC),
                 id="no-zone"),
    pytest.param("", "GMT", None, id="empty"),
    pytest.param("soon", "GMT", None, id="unreadable"),
])
def test_opscenter_display_times_become_utc(shown: str, zone: str,
                                            instant: datetime | None) -> None:
    assert mapping.parse_opscenter_time(shown, timezone=zone) == instant
