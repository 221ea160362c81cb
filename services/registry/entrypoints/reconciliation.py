"""Internal reconciliation endpoints of a registry, called by the migrant exchange (scope ops:resolve)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from services.registry.service_layer import reconciliation as svc
from shared.app import UnitOfWork
from shared.auth import Client, require
from shared.identity import DivisionCode
from shared.openapi import problems

router = APIRouter(prefix="/v1/internal/reconciliation", tags=["reconciliation (internal)"])
Reconciler = Annotated[Client, require("ops:resolve")]
Buckets = Annotated[int, Field(ge=1, le=65536)]


class DrillDownIn(BaseModel):
    jurisdiction: DivisionCode
    counterpart: DivisionCode
    buckets: Buckets
    selected: list[Annotated[int, Field(ge=0, lt=65536)]] = Field(max_length=65536)


class CorrectionIn(BaseModel):
    jurisdiction: DivisionCode = Field(description="the owning side, whose record is authoritative")
    counterpart: DivisionCode
    subject: str = Field(pattern=r"^[0-9a-f]{32}$")
    kind: Literal["person", "birth", "marriage"]
    key: str = Field(min_length=1, max_length=64)
    action: Literal["reannounce", "remove_duplicate"]
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
    return await svc.digests(conn, request.app.state.settings, jurisdiction, counterpart, buckets)


@router.post("/records", summary="The records of differing buckets, as hashes")
async def records(body: DrillDownIn, request: Request, conn: UnitOfWork, _: Reconciler) -> dict[str, Any]:
    """Drill-down: per record its key, hash and a keyed hash per field."""
    return await svc.drill_down(
        conn, request.app.state.settings, body.jurisdiction, body.counterpart, body.buckets, body.selected
    )


@router.post(
    "/corrections",
    status_code=201,
    summary="Emit the correction that resolves a discrepancy",
    responses=problems(404),
)
async def corrections(
    body: CorrectionIn, request: Request, conn: UnitOfWork, _: Reconciler
) -> dict[str, Any]:
    """The owning registry re-announces its record (or removes its duplicate) as ``record.corrected.v1``."""
    return await svc.emit_correction(conn, request.app.state.settings, body.model_dump(mode="json"))
