"""The leak scan reads what the whole run wrote, so it runs after every other test."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    last = [i for i in items if i.path.name == "test_security_leaks.py"]
    if last:
        items[:] = [i for i in items if i.path.name != "test_security_leaks.py"] + last
