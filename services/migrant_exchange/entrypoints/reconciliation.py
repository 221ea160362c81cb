"""HTTP routes of reconciliation and discrepancy cases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from services.migrant_exchange.adapters import discrepancies as cases
from services.migrant_exchange.adapters import reconciliations as runs
from services.migrant_exchange.entrypoints import views
from services.migrant_exchange.entrypoints.state import exchange_state
from services.migrant_exchange.service_layer import reconciliation as svc
from shared.app import Pool, UnitOfWork
from shared.auth import Client, require
from shared.errors import NotFound
from shared.identity import DivisionCode
from shared.openapi import problems
from shared.text import PlainText

router = APIRouter(prefix="/v1", tags=["reconciliation"])
Resolver = Annotated[Client, require("ops:resolve")]
OpsReader = Annotated[Client, require("ops:read")]
Kind = Literal["missing", "field_conflict", "duplicate", "sequence_gap"]
RepairState = Literal[
    "requested", "awaiting_feedback", "applied", "conflict", "rejected", "failed", "not_routed", "overdue"
]


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
    subject: str | None = Field(
        default=None,
        description="pseudonymous subject key; withheld from operators (null): a repair reads it from the case",
    )
    record_kind: str = Field(description="a pregnancy reads as the neutral category")
    record_key: str | None = Field(
        default=None,
        description="the record's key (a certificate or medical-certificate number); withheld from operators (null)",
    )
    missing_at: str | None
    duplicated_at: str | None
    fields: list[str] = Field(description="names of the fields that differ, never their values")
    detail: dict[str, Any] = Field(
        description="divisions (owner, owner_at, duplicated_at) and a sequence gap's source and numbers"
        " (missing_from, missing_to; arrived and still_missing once late events came: none missing resolves it);"
        " any other entry (duplicate_of, key_at_<division>) is named with a null value"
    )
    reconciliation_id: uuid.UUID | None
    state: Literal["open", "resolved"]
    repair_state: RepairState | None = Field(
        default=None,
        description="how far the repair of a 'correct' resolution got; 'applied' resolves the case",
    )
    reason: str | None = Field(default=None, description="why the last repair did not resolve the case")
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolution: dict[str, Any] | None


class ResolutionIn(BaseModel):
    action: Literal["correct", "dismiss"]
    owner: DivisionCode | None = Field(
        default=None,
        description="for 'correct': where the record was registered (its owner), when the sides disagree on it",
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
    state = exchange_state(request)
    command = svc.Reconcile(body.division_a, body.division_b, "request")
    return await svc.reconcile(pool, state.settings, state.registries, command)


@router.get("/reconciliations/{reconciliation_id}", summary="One reconciliation run", responses=problems(404))
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
    """The case queue, filtered by state, kind, jurisdiction or the run that found them: kinds,
    states, divisions, field names and repair progress, without subject keys or record values."""
    rows = await cases.list_cases(conn, state, kind, jurisdiction, reconciliation_id, limit)
    return [views.discrepancy(r) for r in rows]


@router.post(
    "/discrepancies/{discrepancy_id}/resolution",
    response_model=Discrepancy,
    summary="Resolve a discrepancy",
    responses={
        202: {
            "model": Discrepancy,
            "description": "the repair is sent; the case awaits the counterpart's feedback",
        },
        **problems(404, 409, 422),
    },
)
async def resolve_discrepancy(
    discrepancy_id: uuid.UUID,
    body: ResolutionIn,
    request: Request,
    response: Response,
    pool: Pool,
    client: Resolver,
) -> dict[str, Any]:
    """``dismiss`` closes with a note. ``correct`` has a registry send the repair (the record whole
    to the side that lacks it, the owner's values, or a duplicate retired) and answers with the
    case still open: it is resolved when the counterpart's feedback says ``applied``, and shows
    ``repair_state`` and ``reason`` otherwise."""
    command = svc.Resolve(discrepancy_id, body.action, body.owner, body.note, client.client_id)
    case = await svc.resolve(pool, exchange_state(request).registries, command)
    if case["state"] == "open":
        response.status_code = 202  # accepted: the counterpart's feedback decides
    return views.discrepancy(case)
