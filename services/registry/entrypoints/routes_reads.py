"""The reads of personal data: a person's record for a purpose, the subject-access log, a pregnancy
record. Every read is audited."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from services.registry.entrypoints import schemas_reads as s
from services.registry.entrypoints.routes_common import Auditor, PregnancyReader, Reader, ctx, problems
from services.registry.entrypoints.schemas_reads import Purpose
from services.registry.service_layer import reads
from shared.app import UnitOfWork
from shared.errors import InvalidInput
from shared.identity import MAX_ID_NUMBER_INPUT, check_id_number

router = APIRouter(prefix="/v1")
Body = dict[str, object]
IdNumberPath = Annotated[
    str,
    Path(
        description="18-character resident identity number",
        examples=["11010119940517004X"],
        max_length=MAX_ID_NUMBER_INPUT,
    ),
]
PurposeQuery = Annotated[Purpose, Query(description="why the record is read (decides what is disclosed)")]


def _id_number(value: str) -> str:
    try:
        return check_id_number(value)
    except ValueError as e:
        raise InvalidInput(str(e), field="id_number", rule="gb11643") from None


@router.get(
    "/persons/{id_number}",
    response_model=s.PersonRecord,
    response_model_exclude_none=True,
    summary="Read a person's record",
    tags=["registry: reads"],
    responses=problems(404, 422),
)
async def read_person(
    id_number: IdNumberPath, purpose: PurposeQuery, request: Request, conn: UnitOfWork, client: Reader
) -> Body:
    """The record for a purpose: the client's own residents, or migrants shared with it; audited."""
    return await reads.read_person(conn, ctx(request, client), client, _id_number(id_number), purpose)


@router.get(
    "/persons/{id_number}/disclosures",
    response_model=s.Disclosures,
    summary="Subject-access log",
    tags=["registry: reads"],
    responses=problems(404, 422),
)
async def read_disclosures(
    id_number: IdNumberPath,
    request: Request,
    conn: UnitOfWork,
    client: Auditor,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Body:
    """Who received or read this person's data, newest first (from the hash-chained audit log)."""
    return await reads.read_disclosures(conn, ctx(request, client), client, _id_number(id_number), limit)


@router.get(
    "/pregnancies/{pregnancy_id}",
    response_model=s.PregnancyRecord,
    summary="Read a pregnancy record",
    tags=["registry: reads"],
    responses=problems(404, 422),
)
async def read_pregnancy(
    pregnancy_id: uuid.UUID,
    purpose: PurposeQuery,
    request: Request,
    conn: UnitOfWork,
    client: PregnancyReader,
) -> Body:
    """Only for the mother's own origin and destination registries, for care and registration."""
    return await reads.read_pregnancy(conn, ctx(request, client), client, pregnancy_id, purpose)
