"""Bodies of the vital-event routes: persons, moves, marriages, pregnancies, births, corrections.

The OpenAPI document is generated from these (and the other ``schemas_<topic>.py``).

Every model carries an example, so the published document shows a registrar what to send.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from services.registry.domain.births import BirthRecorded, RegisterBirth
from services.registry.domain.corrections import CorrectionRecorded, CorrectRecord
from services.registry.domain.marriages import DissolveMarriage, MarriageRecorded, RegisterMarriage
from services.registry.domain.migrations import MigrationRecorded, RecordMigration
from services.registry.domain.persons import PersonRecorded, RegisterPerson
from services.registry.domain.pregnancies import ClosePregnancy, PregnancyRecorded, RegisterPregnancy

MOTHER, FATHER, CHILD = "11010119940517004X", "11010119920803003X", "110101202509010061"
EVENT_ID = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


def _request(example: dict[str, Any], *, strip: bool = True) -> ConfigDict:
    """A request body: unknown fields refused, text stripped (``strip``), with its example."""
    config = ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})
    if strip:
        config["str_strip_whitespace"] = True
    return config


PERSON: dict[str, Any] = {
    "id_number": MOTHER,
    "name": "李秀英",
    "sex": "F",
    "birth_date": "1994-05-17",
    "hukou_division": "320412",
    "residence_division": "320412",
}


class PersonIn(RegisterPerson):
    model_config = _request(PERSON)


class PersonOut(PersonRecorded):
    model_config = _example(**PERSON, jurisdiction="320412", source_division="320412", event_id=EVENT_ID)


MIGRATION: dict[str, Any] = {
    "kind": "departed",
    "id_number": MOTHER,
    "from_division": "320412",
    "to_division": "440703",
    "migration_date": "2025-02-01",
}


class MigrationIn(RecordMigration):
    model_config = _request(MIGRATION)


class MigrationOut(MigrationRecorded):
    model_config = _example(
        **MIGRATION,
        migration_id="5b0c9a52-1d7e-4c55-9d1e-3b1f7a0c2e11",
        jurisdiction="320412",
        event_id=EVENT_ID,
    )


MARRIAGE: dict[str, Any] = {
    "spouse_a_id_number": FATHER,
    "spouse_b_id_number": MOTHER,
    "marriage_date": "2023-10-01",
}


class MarriageIn(RegisterMarriage):
    model_config = _request(MARRIAGE)


class MarriageOut(MarriageRecorded):
    model_config = _example(
        **MARRIAGE,
        marriage_id="7d2f3c4e-8a1b-4c2d-9e3f-0a1b2c3d4e5f",
        registered_in="320412",
        dissolution_date=None,
        dissolution_reason=None,
        jurisdiction="320412",
        event_id=EVENT_ID,
    )


class DissolutionIn(DissolveMarriage):
    model_config = _request({"dissolution_date": "2025-06-30", "reason": "divorce"}, strip=False)


PREGNANCY: dict[str, Any] = {
    "mother_id_number": MOTHER,
    "registered_on": "2025-03-01",
    "expected_delivery": "2025-09-01",
}


class PregnancyIn(RegisterPregnancy):
    model_config = _request(PREGNANCY)


class PregnancyOut(PregnancyRecorded):
    model_config = _example(
        **PREGNANCY,
        pregnancy_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        registered_in="440703",
        closed_on=None,
        outcome=None,
        jurisdiction="440703",
        event_id=EVENT_ID,
    )


class ClosureIn(ClosePregnancy):
    model_config = _request({"outcome": "ended", "closed_on": "2025-05-01"}, strip=False)


BIRTH: dict[str, Any] = {
    "medical_certificate_number": "O440123456",
    "child_name": "李小明",
    "child_sex": "M",
    "child_birth_date": "2025-09-01",
    "mother_id_number": MOTHER,
    "father_id_number": FATHER,
}


class BirthIn(RegisterBirth):
    model_config = _request(BIRTH)


class BirthOut(BirthRecorded):
    model_config = _example(
        **BIRTH,
        birth_id="3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
        birth_order=1,
        birth_division="440703",
        jurisdiction="440703",
        event_id=EVENT_ID,
    )


CORRECTION: dict[str, Any] = {
    "corrected_event_id": EVENT_ID,
    "record_type": "birth",
    "record_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
    "changes": {"child_name": "李晓明"},
    "reason": "the name was mistyped at the counter",
}


class CorrectionIn(CorrectRecord):
    model_config = _request(CORRECTION)


class CorrectionOut(CorrectionRecorded):
    model_config = _example(
        **CORRECTION,
        correction_id="9f8e7d6c-5b4a-4321-8fed-cba987654321",
        previous={"child_name": "李小明"},
        jurisdiction="440703",
        event_id=EVENT_ID,
    )
