"""Where a fresh consumer starts and how far behind a group is, by the group's own record."""

from __future__ import annotations

import datetime as dt

from aiokafka import TopicPartition

from services.migrant_exchange.adapters.group_lag import GroupLag
from services.migrant_exchange.service_layer.indicators import Thresholds, alerts
from shared.consumer_positions import Position, lag, start_offset
from shared.settings import KafkaSettings

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
A, B = TopicPartition("vital.birth.v1", 0), TopicPartition("vital.birth.v1", 1)


def test_a_member_resumes_at_the_recorded_position_of_the_same_broker_log() -> None:
    assert start_offset(Position(42, "log-1", NOW), "log-1", rewind=False) == 42


def test_a_position_of_a_log_the_broker_no_longer_has_reads_the_new_log_from_its_start() -> None:
    assert start_offset(Position(42, "log-1", NOW), "log-2", rewind=False) == 0
    assert start_offset(Position(42, "log-1", NOW), "log-1", rewind=True) == 0


def test_without_a_record_the_group_offset_decides_unless_a_rewind_was_asked() -> None:
    assert start_offset(None, "log-1", rewind=False) is None
    assert start_offset(None, "log-1", rewind=True) == 0


def test_lag_counts_from_the_recorded_position_or_from_the_start_of_a_new_log() -> None:
    ends = {A: 100, B: 30}
    assert lag(ends, {A: Position(60, "log-1", NOW), B: Position(30, "log-1", NOW)}, "log-1") == {
        "vital.birth.v1": 40
    }
    # The broker came back empty and refilled: the old positions say nothing about the new log.
    assert lag(ends, {A: Position(500, "log-1", NOW)}, "log-2") == {"vital.birth.v1": 100}


def test_a_partition_never_recorded_lags_from_where_the_group_starts_there() -> None:
    ends = {A: 100, B: 30}
    # Never recorded on B: the group reads it from its committed offset, or the log's start.
    assert lag(ends, {A: Position(100, "log-1", NOW)}, "log-1", {B: 0}) == {"vital.birth.v1": 30}
    assert lag(ends, {A: Position(100, "log-1", NOW)}, "log-1", {B: 25}) == {"vital.birth.v1": 5}
    # Where the broker could not say, nothing is counted for it.
    assert lag(ends, {A: Position(100, "log-1", NOW)}, "log-1", {}) == {"vital.birth.v1": 0}


def test_a_group_that_stops_moving_with_records_unread_is_stalled_and_one_that_vanished_is_absent() -> None:
    group_lag = GroupLag(KafkaSettings(), stall_seconds=30)
    committed = {A: 10}
    assert group_lag._state("registry-440703", committed, lag=5, now=0.0) == "ok"
    assert group_lag._state("registry-440703", dict(committed), lag=5, now=20.0) == "ok"
    assert group_lag._state("registry-440703", dict(committed), lag=5, now=31.0) == "stalled"
    assert group_lag._state("registry-440703", {A: 11}, lag=4, now=32.0) == "ok"  # it moved
    assert group_lag._state("registry-440703", {A: 11}, lag=0, now=100.0) == "ok"  # caught up, idle


def test_stalled_and_vanished_groups_raise_alerts_before_plain_lag() -> None:
    snapshot = {
        "lag": [
            {"group": "verification", "topic": "certificate.lifecycle.v1", "lag": 5000, "state": "ok"},
            {
                "group": "registry-440703",
                "topic": "exchange.notification.v1",
                "lag": 1790,
                "state": "stalled",
            },
            {
                "group": "registry-320412",
                "topic": "(group gone from the broker)",
                "lag": None,
                "state": "absent",
            },
        ]
    }
    found = alerts(snapshot, Thresholds())
    assert [a["code"] for a in found] == ["consumer-stalled", "consumer-absent", "lag"]
    assert found[0]["level"] == found[1]["level"] == "alert"
    assert "1790" in found[0]["text"] and "registry-320412" in found[1]["text"]
