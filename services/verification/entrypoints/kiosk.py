"""The reference kiosk: its page, its offline web-app files, and the report of offline checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.verification.domain.verdict import Purpose
from services.verification.entrypoints.deps import Verifier
from services.verification.entrypoints.state import verification_state
from services.verification.service_layer.offline import OfflineCheck, record_offline_checks
from shared.openapi import problems

HERE = Path(__file__).parent
KIOSK_PAGE = (HERE / "kiosk.html").read_text(encoding="utf-8")
# The page's files, by the name it asks for: a fixed table, so no path from a request reaches
# the file system. jsQR.js is vendored from npm (see static/VENDORED.md); nothing loads from a CDN.
ASSETS: dict[str, str] = {
    "kiosk.js": "text/javascript",
    "offline.js": "text/javascript",
    "camera.js": "text/javascript",
    "jsQR.js": "text/javascript",
    "manifest.webmanifest": "application/manifest+json",
    "icon.svg": "image/svg+xml",
}
_FILES = {name: (HERE / "static" / name).read_bytes() for name in [*ASSETS, "sw.js"]}

kiosk_router = APIRouter(tags=["kiosk"])
offline_router = APIRouter(prefix="/v1", tags=["verification"])


@kiosk_router.get("/kiosk", response_class=HTMLResponse, summary="Reference kiosk page")
async def kiosk() -> HTMLResponse:
    """A clerk scans (camera or scanner) or types a certificate and reads the answer in large words."""
    return HTMLResponse(KIOSK_PAGE, headers={"Cache-Control": "no-store"})


@kiosk_router.get(
    "/kiosk/sw.js", summary="The kiosk's service worker", response_class=Response, include_in_schema=False
)
async def service_worker() -> Response:
    """Keeps the page's files for offline use; allowed to control ``/kiosk`` itself."""
    return Response(
        _FILES["sw.js"],
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/kiosk"},
    )


def _asset_route(name: str) -> None:
    @kiosk_router.get(
        f"/kiosk/{name}", summary=f"Kiosk file {name}", response_class=Response, include_in_schema=False
    )
    async def asset() -> Response:
        return Response(_FILES[name], media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    asset.__name__ = "kiosk_" + name.replace(".", "_")


for _name in ASSETS:
    _asset_route(_name)


class OfflineCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    token: str = Field(
        min_length=1,
        max_length=4096,
        description="what was scanned or typed: a check of anything is audited (as not genuine "
        "unless it is a token signed by a key of the issuer it names), so one bad scan does not "
        "refuse the batch it travels in",
    )
    purpose: Purpose
    result: Literal["valid", "expired", "revoked", "invalid_signature", "status_unknown"] = Field(
        description="what the kiosk answered offline (status_unknown: it refused, e.g. a stale list)"
    )
    checked_at: dt.datetime = Field(description="when the kiosk checked (its clock)")


class OfflineChecksIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checks: list[OfflineCheckIn] = Field(min_length=1, max_length=500)


class OfflineChecksOut(BaseModel):
    recorded: int
    genuine: int = Field(description="how many of the reported tokens carry a genuine signature")


@offline_router.post(
    "/verifications/offline",
    response_model=OfflineChecksOut,
    summary="Report checks a kiosk made offline, for the audit log",
    responses=problems(503),
)
async def report_offline_checks(body: OfflineChecksIn, request: Request, client: Verifier) -> dict[str, int]:
    """Each check becomes an audit entry like an online one (``via: offline``), so the
    subject-access log stays complete; answered once every entry is durable."""
    checks = [OfflineCheck(c.token, c.purpose, c.result, c.checked_at) for c in body.checks]
    state = verification_state(request)
    return await record_offline_checks(state.pool, state.audit_writer, client, checks)
