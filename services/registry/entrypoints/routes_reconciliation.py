"""Internal reconciliation endpoints of a registry, called by the migrant exchange alone.

They answer per pseudonymous subject (record keys, keyed field hashes, pregnancies included) and
make this registry re-send a record, so they take ``reconcile:internal``: a scope only a
``service`` client (the exchange's own credential) may hold, never an operator (DESIGN.md
section 10, "operators see operations, not people"). Operators reconcile through the exchange.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from services.registry.entrypoints.routes_common import registry_settings
from services.registry.service_layer import reconciliation as svc
from services.registry.service_layer import repairs
from shared.app import UnitOfWork
from shared.auth import Client, require
from shared.identity import DivisionCode
from shared.openapi import problems

router = APIRouter(prefix="/v1/internal/reconciliation", tags=["reconciliation (internal)"])
INTERNAL = "reconcile:internal"
Reconciler = Annotated[
    Client,
    require(
        INTERNAL,
        why="these endpoints serve the exchange's service client alone; "
        "an operator reconciles through the exchange (POST /v1/reconciliations)",
    ),
]
Buckets = Annotated[int, Field(ge=1, le=65536)]


Held = Literal["marriage", "birth", "pregnancy", "certificate"]


class DigestsIn(BaseModel):
    jurisdiction: DivisionCode
    counterpart: DivisionCode
    buckets: Buckets = 4096
    left_out: list[tuple[Held, Annotated[str, Field(min_length=1, max_length=64)]]] = Field(
        default=[],
        max_length=1_000_000,
        description="records (kind, exchange key) the exchange set aside for the pair: held by one of"
        " it and never sent to the other; both sides leave them out, so their digests agree",
    )


class DrillDownIn(BaseModel):
    jurisdiction: DivisionCode
    counterpart: DivisionCode
    buckets: Buckets
    selected: list[Annotated[int, Field(ge=0, lt=65536)]] = Field(max_length=65536)


class RepairIn(BaseModel):
    jurisdiction: DivisionCode = Field(description="the sending side, which holds the record")
    counterpart: DivisionCode = Field(description="the side the repair is for")
    subject: str = Field(pattern=r"^[0-9a-f]{32}$")
    kind: Literal["person", "migration", "marriage", "birth", "pregnancy", "certificate"]
    key: str = Field(min_length=1, max_length=64, description="the record's reconciliation key")
    action: Literal["send", "retire"] = Field(
        description="send: announce the whole record; retire: take out a birth registered twice"
    )
    kept_key: str | None = Field(default=None, max_length=64, description="retire: the copy that stays")
    repair_id: uuid.UUID = Field(description="the exchange's id of the repair, carried as correction_id")
    discrepancy_id: uuid.UUID


@router.get(
    "/digests", summary="Counts and digests per subject bucket of the records shared with a counterpart"
)
async def digests(
    request: Request,
    conn: UnitOfWork,
    _: Reconciler,
    jurisdiction: DivisionCode,
    counterpart: DivisionCode,
    buckets: Annotated[int, Query(ge=1, le=65536)] = 4096,
) -> dict[str, Any]:
    """Order-independent digests; no identity numbers or values leave the registry."""
    return await svc.digests(conn, registry_settings(request), jurisdiction, counterpart, buckets, [])


@router.post(
    "/digests",
    summary="Counts and digests per subject bucket, leaving out the records the exchange set aside",
)
async def digests_leaving_out(
    body: DigestsIn, request: Request, conn: UnitOfWork, _: Reconciler
) -> dict[str, Any]:
    """As ``GET``, without the records both sides leave out: those one of the pair holds and the
    other was never sent, as the exchange's holders say."""
    settings = registry_settings(request)
    left_out: list[tuple[str, str]] = [(kind, key) for kind, key in body.left_out]
    return await svc.digests(conn, settings, body.jurisdiction, body.counterpart, body.buckets, left_out)


@router.post("/records", summary="The records of differing buckets, as hashes")
async def records(body: DrillDownIn, request: Request, conn: UnitOfWork, _: Reconciler) -> dict[str, Any]:
    """Drill-down: per record its key, hash and a keyed hash per field."""
    return await svc.drill_down(
        conn, registry_settings(request), body.jurisdiction, body.counterpart, body.buckets, body.selected
    )


@router.post(
    "/corrections",
    status_code=201,
    summary="Send the repair of a discrepancy",
    responses=problems(404, 422),
)
async def corrections(body: RepairIn, request: Request, conn: UnitOfWork, _: Reconciler) -> dict[str, Any]:
    """This side announces its record whole (or retires its duplicate) as ``record.corrected.v1``."""
    return await repairs.send_repair(conn, registry_settings(request), body.model_dump())
