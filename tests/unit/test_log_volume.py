"""The Kafka client's reconnection errors are let through once per interval, with a count, and
the service's own lines are never held back (shared.observability.OncePerInterval)."""

from __future__ import annotations

import io
import json
import logging

from shared.observability import JsonFormatter, OncePerInterval


def _logged(records: list[tuple[str, str]], interval: float) -> list[dict[str, object]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("test"))
    handler.addFilter(OncePerInterval(("aiokafka", "kafka"), interval=interval))
    for name, msg in records:
        handler.handle(logging.makeLogRecord({"name": name, "msg": msg, "levelno": logging.ERROR}))
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_repeated_client_errors_pass_once_per_interval_with_the_count_held_back() -> None:
    refused = ("aiokafka", "Unable connect to node with id %s: %s")
    lines = _logged([refused] * 50 + [("aiokafka.consumer.fetcher", "Failed fetch messages")] * 3, 3600)
    assert [line["logger"] for line in lines] == ["aiokafka", "aiokafka.consumer.fetcher"]
    again = _logged([refused] * 3, 0.0)  # the interval passed each time: every line, none held
    assert len(again) == 3 and all("repeated" not in line for line in again)


def test_the_count_of_held_back_lines_comes_with_the_next_one_let_through() -> None:
    f = OncePerInterval(("kafka",), interval=0.0)
    f._last[("kafka", "lost")] = (float("-inf"), 41)  # 41 held back in the last interval
    record = logging.makeLogRecord({"name": "kafka", "msg": "lost"})
    assert f.filter(record) and record.repeated == 41


def test_the_services_own_lines_are_never_held_back() -> None:
    lines = _logged([("shared.consumer", "consumer reconnecting")] * 20, 3600)
    assert len(lines) == 20
