"""The kiosk's vendored decoder is the one recorded, and every file the page needs is served."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from services.verification.entrypoints import kiosk

STATIC = Path(kiosk.__file__).parent / "static"


def test_vendored_decoder_is_recorded() -> None:
    record = (STATIC / "VENDORED.md").read_text(encoding="utf-8")
    row = next(line for line in record.splitlines() if line.startswith("| `jsQR.js`"))
    digest = re.findall(r"`([0-9a-f]{64})`", row)[-1]
    assert hashlib.sha256((STATIC / "jsQR.js").read_bytes()).hexdigest() == digest
    assert "| 1.4.0 |" in row and "Apache-2.0" in row
    assert "Apache License" in (STATIC / "jsQR.LICENSE.txt").read_text(encoding="utf-8")


def test_the_page_and_its_service_worker_name_only_served_files() -> None:
    served = {f"/kiosk/{name}" for name in kiosk.ASSETS} | {"/kiosk", "/kiosk/sw.js"}
    page = kiosk.KIOSK_PAGE
    wanted = set(re.findall(r'(?:src|href)="(/kiosk[^"]*)"', page))
    assert wanted and wanted <= served
    cached = set(re.findall(r'"(/kiosk[^"]*)"', (STATIC / "sw.js").read_text(encoding="utf-8")))
    assert cached == served - {"/kiosk/sw.js"}
    assert "http" not in "".join(wanted)  # nothing from another origin (no CDN)
