"""Each service's README has a short map (issue 20, acceptance 4): where a new event type, route,
rule and background task go, and the path one event takes in at most ten named files. The files
it names exist, and a name it gives a file (`file.py`: `name`) is defined there, so a move or a
rename that leaves the map behind fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["registry", "migrant_exchange", "verification"]
FILE = re.compile(r"`([\w/.-]+\.py)`")
NAMED = re.compile(r"`([\w/.-]+\.py)`: `(\w+)[`.]")


def _section(service: str) -> str:
    text = (ROOT / "services" / service / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Where things go\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _path(service: str, name: str) -> Path:
    """A named file: inside the service, or from the repository's root."""
    local = ROOT / "services" / service / name
    return local if local.exists() else ROOT / name


def _steps(section: str) -> str:
    """The numbered path of one event through the code."""
    return "\n".join(
        line for line in section.splitlines() if re.match(r"\d+\. ", line) or line.startswith("   ")
    )


@pytest.mark.parametrize("service", SERVICES)
def test_the_map_says_where_things_go(service: str) -> None:
    section = _section(service)
    for what in ("new event type", "new route", "new rule", "new background task"):
        assert f"| a {what}" in section, (service, what)


@pytest.mark.parametrize("service", SERVICES)
def test_the_files_it_names_exist_and_hold_what_it_says(service: str) -> None:
    section = _section(service)
    for name in set(FILE.findall(section)):
        assert _path(service, name).is_file(), (service, name)
    for name, defined in NAMED.findall(section):
        source = _path(service, name).read_text(encoding="utf-8")
        assert re.search(rf"\b(def|class) {defined}\b|^{defined}\b", source, re.MULTILINE), (
            service,
            name,
            defined,
        )


@pytest.mark.parametrize("service", SERVICES)
def test_one_event_takes_at_most_ten_named_files(service: str) -> None:
    steps = _steps(_section(service))
    assert steps.startswith("1. "), service
    assert 3 <= len(set(FILE.findall(steps))) <= 10, (service, sorted(set(FILE.findall(steps))))
