"""Bodies of the vital-event routes: persons, moves, marriages, pregnancies, births, corrections.

The OpenAPI document is generated from these (and the other ``schemas_<topic>.py``).

Every model carries an example, so the published document shows a registrar what to send.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.registry.domain.births import RegisterBirth
from services.registry.domain.corrections import CorrectRecord
from services.registry.domain.marriages import DissolveMarriage, RegisterMarriage
from services.registry.domain.migrations import RecordMigration
from services.registry.domain.persons import RegisterPerson
from services.registry.domain.pregnancies import ClosePregnancy, RegisterPregnancy
from shared.events.payloads import BirthPlaceKind, Sex

MOTHER, FATHER, CHILD = "11010119940517004X", "11010119920803003X", "110101202509010061"
EVENT_ID = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


PERSON: dict[str, Any] = {
    "id_number": MOTHER,
    "name": "李秀英",
    "sex": "F",
    "birth_date": "1994-05-17",
    "hukou_division": "320412",
    "residence_division": "320412",
}


class PersonIn(RegisterPerson):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [PERSON]}
    )


class PersonOut(BaseModel):
    model_config = _example(**PERSON, jurisdiction="320412", source_division="320412", event_id=EVENT_ID)
    id_number: str
    name: str
    sex: Sex
    birth_date: dt.date
    hukou_division: str
    residence_division: str
    jurisdiction: str
    source_division: str
    event_id: uuid.UUID


MIGRATION: dict[str, Any] = {
    "kind": "departed",
    "id_number": MOTHER,
    "from_division": "320412",
    "to_division": "440703",
    "migration_date": "2025-02-01",
}


class MigrationIn(RecordMigration):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [MIGRATION]}
    )


class MigrationOut(BaseModel):
    model_config = _example(
        **MIGRATION,
        migration_id="5b0c9a52-1d7e-4c55-9d1e-3b1f7a0c2e11",
        jurisdiction="320412",
        event_id=EVENT_ID,
    )
    migration_id: uuid.UUID
    kind: str
    id_number: str
    from_division: str
    to_division: str
    migration_date: dt.date
    jurisdiction: str
    event_id: uuid.UUID


MARRIAGE: dict[str, Any] = {
    "spouse_a_id_number": FATHER,
    "spouse_b_id_number": MOTHER,
    "marriage_date": "2023-10-01",
}


class MarriageIn(RegisterMarriage):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [MARRIAGE]}
    )


class MarriageOut(BaseModel):
    model_config = _example(
        **MARRIAGE,
        marriage_id="7d2f3c4e-8a1b-4c2d-9e3f-0a1b2c3d4e5f",
        registered_in="320412",
        dissolution_date=None,
        dissolution_reason=None,
        jurisdiction="320412",
        event_id=EVENT_ID,
    )
    marriage_id: uuid.UUID
    spouse_a_id_number: str
    spouse_b_id_number: str
    marriage_date: dt.date
    registered_in: str
    dissolution_date: dt.date | None = None
    dissolution_reason: str | None = None
    jurisdiction: str
    event_id: uuid.UUID


class DissolutionIn(DissolveMarriage):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"dissolution_date": "2025-06-30", "reason": "divorce"}]},
    )


PREGNANCY: dict[str, Any] = {
    "mother_id_number": MOTHER,
    "registered_on": "2025-03-01",
    "expected_delivery": "2025-09-01",
}


class PregnancyIn(RegisterPregnancy):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [PREGNANCY]}
    )


class PregnancyOut(BaseModel):
    model_config = _example(
        **PREGNANCY,
        pregnancy_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        registered_in="440703",
        closed_on=None,
        outcome=None,
        jurisdiction="440703",
        event_id=EVENT_ID,
    )
    pregnancy_id: uuid.UUID
    mother_id_number: str
    registered_in: str
    registered_on: dt.date
    expected_delivery: dt.date | None = None
    closed_on: dt.date | None = None
    outcome: str | None = None
    jurisdiction: str
    event_id: uuid.UUID | None = None


class ClosureIn(ClosePregnancy):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"outcome": "ended", "closed_on": "2025-05-01"}]}
    )


BIRTH: dict[str, Any] = {
    "medical_certificate_number": "O440123456",
    "child_name": "李小明",
    "child_sex": "M",
    "child_birth_date": "2025-09-01",
    "mother_id_number": MOTHER,
    "father_id_number": FATHER,
}


class BirthIn(RegisterBirth):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [BIRTH]}
    )


class BirthOut(BaseModel):
    model_config = _example(
        **BIRTH,
        birth_id="3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
        birth_order=1,
        birth_division="440703",
        jurisdiction="440703",
        event_id=EVENT_ID,
    )
    birth_id: uuid.UUID
    medical_certificate_number: str
    child_name: str
    child_sex: Sex
    child_birth_date: dt.date
    mother_id_number: str
    father_id_number: str | None
    birth_order: int
    birth_division: str
    birth_place_kind: BirthPlaceKind | None = None
    birth_institution: str | None = None
    jurisdiction: str
    event_id: uuid.UUID


CORRECTION: dict[str, Any] = {
    "corrected_event_id": EVENT_ID,
    "record_type": "birth",
    "record_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
    "changes": {"child_name": "李晓明"},
    "reason": "the name was mistyped at the counter",
}


class CorrectionIn(CorrectRecord):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [CORRECTION]}
    )


class CorrectionOut(BaseModel):
    model_config = _example(
        **CORRECTION,
        correction_id="9f8e7d6c-5b4a-4321-8fed-cba987654321",
        previous={"child_name": "李小明"},
        jurisdiction="440703",
        event_id=EVENT_ID,
    )
    correction_id: uuid.UUID
    corrected_event_id: uuid.UUID
    record_type: str
    record_id: str
    changes: dict[str, str | int | None]
    previous: dict[str, Any]
    reason: str
    jurisdiction: str
    event_id: uuid.UUID
