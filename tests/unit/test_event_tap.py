"""The event tap's file as a killed process leaves it: only whole lines are events."""

from __future__ import annotations

from pathlib import Path

import orjson

from shared.events.recording import EventTap, recorded_by


def test_an_append_cut_short_by_a_kill_is_not_read_as_an_event(tmp_path: Path) -> None:
    tap = EventTap(str(tmp_path), "registry-test")
    events = [orjson.dumps({"id": str(i), "data": {"n": i}}) for i in range(3)]
    tap.write(events[:2])
    assert tap.path is not None
    with tap.path.open("ab") as f:  # what SIGKILL in the middle of the next append leaves
        f.write(events[2][: len(events[2]) // 2])

    assert list(recorded_by(tap.path)) == events[:2]


def test_every_whole_line_is_read(tmp_path: Path) -> None:
    tap = EventTap(str(tmp_path), "registry-test")
    events = [orjson.dumps({"id": str(i)}) for i in range(4)]
    tap.write(events[:1])
    tap.write(events[1:])

    assert tap.path is not None
    assert list(recorded_by(tap.path)) == events
    assert list(recorded_by(tmp_path / "nobody.jsonl")) == []
