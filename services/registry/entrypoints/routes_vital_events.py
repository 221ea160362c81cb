"""The vital-event write routes: persons, marriages, moves, pregnancies, births, corrections.

Each route is one call of its use case (``service_layer/<kind>.py``) with the validated body and
the request's ``Recorder`` (connection, caller, jurisdiction, trace: ``routes_common.py``).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from services.registry.domain.births import BirthRecorded
from services.registry.domain.corrections import CorrectionRecorded
from services.registry.domain.marriages import MarriageRecorded
from services.registry.domain.migrations import MigrationRecorded
from services.registry.domain.persons import PersonRecorded
from services.registry.domain.pregnancies import PregnancyRecorded
from services.registry.entrypoints import schemas_vital_events as s
from services.registry.entrypoints.routes_common import Recorder, problems
from services.registry.service_layer import births, corrections, marriages, migrations, persons, pregnancies

router = APIRouter(prefix="/v1", tags=["registry: vital events"])


@router.post(
    "/persons",
    status_code=201,
    response_model=s.PersonOut,
    summary="Register a person",
    responses=problems(409, 422),
)
async def register_person(body: s.PersonIn, rec: Recorder) -> PersonRecorded:
    """Record a person in the client's jurisdiction; publishes ``person.registered.v1``."""
    return await persons.register_person(rec.conn, rec.ctx, rec.here, body)


@router.post(
    "/marriages",
    status_code=201,
    response_model=s.MarriageOut,
    summary="Register a marriage",
    responses=problems(409, 422),
)
async def register_marriage(body: s.MarriageIn, rec: Recorder) -> MarriageRecorded:
    """Record a marriage of two persons on record, neither already married; ``marriage.registered.v1``."""
    return await marriages.register_marriage(rec.conn, rec.ctx, rec.here, body)


@router.post(
    "/marriages/{marriage_id}/dissolution",
    response_model=s.MarriageOut,
    summary="Record the end of a marriage",
    responses=problems(404, 409, 422),
)
async def dissolve_marriage(marriage_id: uuid.UUID, body: s.DissolutionIn, rec: Recorder) -> MarriageRecorded:
    """Divorce, death or annulment; publishes ``marriage.dissolved.v1``."""
    return await marriages.dissolve_marriage(rec.conn, rec.ctx, rec.here, marriage_id, body)


@router.post(
    "/migrations",
    status_code=201,
    response_model=s.MigrationOut,
    summary="Record a move",
    responses=problems(409, 422),
)
async def record_migration(body: s.MigrationIn, rec: Recorder) -> MigrationRecorded:
    """Record a departure (at the place left), an arrival or a return (at the place arrived at)."""
    return await migrations.record_migration(rec.conn, rec.ctx, rec.here, body)


@router.post(
    "/pregnancies",
    status_code=201,
    response_model=s.PregnancyOut,
    summary="Register a pregnancy",
    responses=problems(409, 422),
)
async def register_pregnancy(body: s.PregnancyIn, rec: Recorder) -> PregnancyRecorded:
    """Record a pregnancy for maternal care; only the mother's origin and destination hear of it."""
    return await pregnancies.register_pregnancy(rec.conn, rec.ctx, rec.here, body)


@router.post(
    "/pregnancies/{pregnancy_id}/closure",
    response_model=s.PregnancyOut,
    summary="Close a pregnancy record",
    responses=problems(404, 409, 422),
)
async def close_pregnancy(pregnancy_id: uuid.UUID, body: s.ClosureIn, rec: Recorder) -> PregnancyRecorded:
    """Close the record when the pregnancy ends; publishes ``pregnancy.closed.v1``."""
    return await pregnancies.close_pregnancy(rec.conn, rec.ctx, rec.here, pregnancy_id, body)


@router.post(
    "/births",
    status_code=201,
    response_model=s.BirthOut,
    summary="Register a birth",
    responses=problems(409, 422),
)
async def register_birth(body: s.BirthIn, rec: Recorder) -> BirthRecorded:
    """Record a birth, one per birth medical certificate; publishes ``birth.registered.v2``."""
    return await births.register_birth(rec.conn, rec.ctx, rec.here, body)


@router.post(
    "/corrections",
    status_code=201,
    response_model=s.CorrectionOut,
    summary="Correct a record",
    responses=problems(404, 409, 422),
)
async def record_correction(body: s.CorrectionIn, rec: Recorder) -> CorrectionRecorded:
    """Correct fields of a record, naming the event corrected and why; ``record.corrected.v1``."""
    return await corrections.record_correction(rec.conn, rec.ctx, rec.here, body)
