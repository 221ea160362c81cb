"""The browser the page tests drive (Debian's headless Chromium through Playwright, no browser
download), and the stack of the agreement and REST-only tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devstack.embedded import EmbeddedPostgres
from devstack.stack import Stack
from tests.conftest import running_stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A Playwright ``Browser`` for the module's tests; each opens (and closes) its own pages."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: run `make browser`")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def agreements_stack(workdir: Path, pg: EmbeddedPostgres) -> Iterator[Stack]:
    """Registries 320412 and 440703, the REST-only 110101, under the agreements of ``agreements_kit``."""
    from tests.e2e.agreements_kit import AGREEMENTS, write_agreements

    path = write_agreements(workdir / "agreements-stack.yaml", AGREEMENTS)
    with running_stack(
        workdir,
        pg,
        "agreements-stack",
        db_prefix="agr_",
        extra_env={"AGREEMENTS_FILE": str(path), "OVERDUE_SWEEP_INTERVAL": "0.3"},
    ) as s:
        yield s
