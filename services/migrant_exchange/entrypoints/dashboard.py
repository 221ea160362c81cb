"""The operations centre: indicators, flows, a live stream and the wall-screen page.

``GET /v1/indicators`` and ``GET /v1/flows`` answer operators (scope ``ops:read``) with aggregates
only. ``GET /v1/stream`` sends server-sent events: one sampler per process builds the picture every
second and fans it out, so ten wall screens cost what one does. ``GET /dashboard`` is the page; it
holds no data and no credential, the operator's token stays in the browser.

The sampler behind the stream is ``service_layer/live_feed.py``, started by ``entrypoints/background.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from services.migrant_exchange.adapters import dead_letters as census
from services.migrant_exchange.adapters import stats
from services.migrant_exchange.entrypoints.state import exchange_state
from services.migrant_exchange.service_layer import indicators as ind
from shared.app import Pool
from shared.auth import Client, require
from shared.errors import InvalidInput, NotFound
from shared.identity import DivisionCode
from shared.inputs import RowId
from shared.openapi import problems

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
OpsReader = Annotated[Client, require("ops:read")]


def _json(doc: Any) -> Response:
    """orjson straight to bytes: FastAPI's encoder is slow on thousands of matrix cells."""
    return Response(orjson.dumps(doc), media_type="application/json")


router = APIRouter(tags=["operations centre"])


@router.get("/v1/indicators", summary="Indicators per jurisdiction and period")
async def get_indicators(
    pool: Pool,
    client: OpsReader,
    jurisdiction: DivisionCode | None = None,
    start: Annotated[
        dt.datetime | None, Query(alias="from", description="period start (default: end - 24 h)")
    ] = None,
    end: Annotated[dt.datetime | None, Query(alias="to", description="period end (default: now)")] = None,
) -> Response:
    """Migrants in and out, issuance, verification, timely feedback, feedback times, discrepancies and
    reconciliation accuracy, with each rate's change from the previous period of the same length."""
    end = _aware(end) or dt.datetime.now(dt.UTC)
    start = _aware(start) or end - dt.timedelta(hours=24)
    if start >= end:
        raise InvalidInput("the period must start before it ends", field="from", rule="before-to")
    if end - start > dt.timedelta(days=366):
        raise InvalidInput("a period is at most 366 days", field="from", rule="max-366-days")
    async with pool.acquire() as conn:
        return _json(await ind.compute_indicators(conn, ind.Period(start, end), jurisdiction))


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


@router.get("/v1/flows", summary="Migrants by origin × destination")
async def get_flows(
    pool: Pool,
    client: OpsReader,
    format: Annotated[
        str, Query(pattern="^(sparse|matrix)$", description="matrix adds dense rows")
    ] = "sparse",
) -> Response:
    """How many people registered in each origin live in each destination (aggregates only)."""
    async with pool.acquire() as conn:
        return _json(await ind.compute_flows(conn, dense=format == "matrix"))


@router.get("/v1/dead-letters", summary="Dead letters of every service (where, when, why)")
async def list_dead_letters(
    pool: Pool, client: OpsReader, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    """``counts``: every service's dead letters by service, topic and reason (read from the
    ``<topic>.dlq`` topics); ``dead_letters``: the exchange's own, newest first, without message
    bodies or keys (every service's letters are listed and replayed with ``exchangectl dlq``)."""
    async with pool.acquire() as conn:
        counts = await census.counts(conn)
        own = [ind.neutral_dead_letter(r) for r in await stats.dead_letters(conn, limit)]
    return _json({"total": sum(int(c["count"]) for c in counts), "counts": counts, "dead_letters": own})


@router.get("/v1/dead-letters/{dead_letter_id}", summary="One dead letter", responses=problems(404))
async def get_dead_letter(dead_letter_id: RowId, pool: Pool, client: OpsReader) -> Response:
    """Where one dead letter came from and why it could not be applied."""
    async with pool.acquire() as conn:
        rows = await stats.dead_letters(conn, 1, dead_letter_id)
    if not rows:
        raise NotFound("no dead letter with this id", field="dead_letter_id", rule="exists")
    return _json(ind.neutral_dead_letter(rows[0]))


@router.get("/v1/stream", summary="Live operations picture (server-sent events)")
async def stream(request: Request, client: OpsReader) -> StreamingResponse:
    """``snapshot`` events once a second: rates, lag, notifications, dead letters, alerts; the flow
    matrix and the indicators ride along whenever they changed."""
    return StreamingResponse(
        exchange_state(request).live_feed.messages(request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    """The wall-screen page (it carries no data; the stream does)."""
    return FileResponse(
        STATIC / "dashboard.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


@router.get("/dashboard/assets/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound("no such asset", field="name", rule="known-asset")
    return FileResponse(STATIC / name, media_type=ASSETS[name])
