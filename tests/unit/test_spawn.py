"""Starting the stack's processes: an exec refused for a moment is tried again, other refusals are not."""

from __future__ import annotations

import errno
import subprocess
import threading
import time
from pathlib import Path

import pytest

from devstack.embedded import spawn


def _script(path: Path) -> Path:
    path.write_text("#!/bin/sh\necho started\n")
    path.chmod(0o755)
    return path


def test_an_executable_still_open_for_writing_starts_once_the_writer_lets_go(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = _script(tmp_path / "service.sh")
    writer = script.open("a")  # as a copy being written out would: the kernel says ETXTBSY
    with pytest.raises(OSError) as refused:
        subprocess.Popen([str(script)])
    assert refused.value.errno == errno.ETXTBSY

    threading.Timer(0.25, writer.close).start()
    process = spawn([str(script)], stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=5)

    assert (process.returncode, out) == (0, b"started\n")
    assert "Text file busy); trying again" in capfd.readouterr().err


def test_a_missing_executable_is_raised_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(FileNotFoundError):
        spawn([str(tmp_path / "no-such-broker")])
    assert time.monotonic() - started < 0.1
