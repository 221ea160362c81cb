"""HTTP routes of reconciliation and discrepancy cases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from services.migrant_exchange.adapters import discrepancies as cases
from services.migrant_exchange.adapters import reconciliations as runs
from services.migrant_exchange.service_layer import reconciliation as svc
from shared.app import Pool, UnitOfWork
from shared.auth import Client, require
from shared.errors import NotFound
from shared.identity import DivisionCode
from shared.text import PlainText

router = APIRouter(prefix="/v1", tags=["reconciliation"])
Resolver = Annotated[Client, require("ops:resolve")]
OpsReader = Annotated[Client, require("ops:read")]
Kind = Literal["missing", "field_conflict", "duplicate", "sequence_gap"]


class ReconciliationIn(BaseModel):
    division_a: DivisionCode
    division_b: DivisionCode


class ReconciliationOut(BaseModel):
    reconciliation_id: uuid.UUID
    division_a: str
    division_b: str
    state: str
    records_a: int
    records_b: int
    buckets: int
    differing_buckets: int
    discrepancies: int
    opened: int
    cleared: int
    by_kind: dict[str, int]
    seconds: float


class Discrepancy(BaseModel):
    id: uuid.UUID
    kind: Kind
    division_a: str
    division_b: str
    subject: str = Field(description="pseudonymous subject key")
    record_kind: str
    record_key: str
    missing_at: str | None
    duplicated_at: str | None
    fields: list[str] = Field(description="names of the fields that differ, never their values")
    detail: dict[str, Any]
    reconciliation_id: uuid.UUID | None
    state: Literal["open", "resolved"]
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolution: dict[str, Any] | None


class ResolutionIn(BaseModel):
    action: Literal["correct", "dismiss"]
    owner: DivisionCode | None = Field(
        default=None, description="for 'correct': the side whose record is authoritative"
    )
    note: PlainText | None = Field(default=None, max_length=500)


@router.post(
    "/reconciliations",
    status_code=201,
    response_model=ReconciliationOut,
    summary="Reconcile a jurisdiction pair",
)
async def start_reconciliation(
    body: ReconciliationIn, request: Request, pool: Pool, _: Resolver
) -> dict[str, Any]:
    """Compare both sides by counts and digests per subject bucket, drill down, open a case per difference."""
    state = request.app.state
    return await svc.reconcile(
        pool, state.settings, state.registries, body.division_a, body.division_b, "request"
    )


@router.get("/reconciliations/{reconciliation_id}", summary="One reconciliation run")
async def get_reconciliation(reconciliation_id: uuid.UUID, conn: UnitOfWork, _: OpsReader) -> dict[str, Any]:
    """The run's counts and outcome (also for scheduled runs and failed ones)."""
    row = await runs.get_run(conn, reconciliation_id)
    if row is None:
        raise NotFound("no reconciliation with this id", field="reconciliation_id", rule="exists")
    return dict(row)


@router.get("/discrepancies", response_model=list[Discrepancy], summary="Discrepancy cases")
async def list_discrepancies(
    conn: UnitOfWork,
    _: OpsReader,
    state: Literal["open", "resolved"] | None = None,
    kind: Kind | None = None,
    jurisdiction: DivisionCode | None = None,
    reconciliation_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    """The case queue, filtered by state, kind, jurisdiction or the run that found them."""
    rows = await cases.list_cases(conn, state, kind, jurisdiction, reconciliation_id, limit)
    return [dict(r) for r in rows]


@router.post(
    "/discrepancies/{discrepancy_id}/resolution", response_model=Discrepancy, summary="Resolve a discrepancy"
)
async def resolve_discrepancy(
    discrepancy_id: uuid.UUID, body: ResolutionIn, request: Request, conn: UnitOfWork, client: Resolver
) -> dict[str, Any]:
    """``correct`` has the owning registry emit a correction event; ``dismiss`` closes with a note."""
    return await svc.resolve(
        conn,
        request.app.state.registries,
        discrepancy_id,
        body.action,
        body.owner,
        body.note,
        client.client_id,
    )
