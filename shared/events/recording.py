"""The event tap: every event a relay publishes, appended as one JSON line to a file.

Development and tests only (``EVENTS_RECORD_DIR``; ignored in production, since payloads carry
identity numbers). The test run sets it so that what the services really sent can be checked
against the published contracts (docs/contracts.md): each process writes its own file, so no
two writers share one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class EventTap:
    def __init__(self, directory: str | None, service: str):
        self.path = recording_path(Path(directory), service, os.getpid()) if directory else None

    def write(self, values: Iterable[bytes]) -> None:
        """Append the events (each one JSON object without line breaks, as published)."""
        if self.path is None:
            return
        lines = b"".join(v + b"\n" for v in values)
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                f.write(lines)


def recording_path(directory: Path, service: str, pid: int) -> Path:
    """The file a service's process records into."""
    return directory / f"{service}-{pid}.jsonl"


def recorded_by(path: Path) -> Iterable[bytes]:
    """The events one process recorded (its file; nothing if it recorded none).

    A line counts once its newline is written: a process killed (SIGKILL) in the middle of an
    append leaves its last event cut short, and that unterminated tail is not an event."""
    if path.exists():
        *lines, _unterminated = path.read_bytes().split(b"\n")
        yield from (line for line in lines if line.strip())
