"""Bodies of the reads of personal data: a person's record, a pregnancy record, the subject-access log."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.registry.domain.persons import Person
from services.registry.entrypoints.schemas_vital_events import MOTHER, PERSON, _example

Purpose = Literal[
    "registration", "maternal_care", "birth_registration", "certificate_issuance", "social_services"
]


class PersonRecord(Person):
    """A person's record; which sections appear depends on the purpose and the client's rights."""

    model_config = _example(
        **PERSON,
        jurisdiction="320412",
        source_division="320412",
        migrations=[
            {
                "id": "5b0c9a52-1d7e-4c55-9d1e-3b1f7a0c2e11",
                "kind": "departed",
                "from_division": "320412",
                "to_division": "440703",
                "migration_date": "2025-02-01",
                "source_division": "320412",
            }
        ],
        births=[],
        marriages=[],
    )
    source_division: str
    jurisdiction: str
    migrations: list[dict[str, Any]] | None = None
    births: list[dict[str, Any]] | None = None
    marriages: list[dict[str, Any]] | None = None
    pregnancies: list[dict[str, Any]] | None = None
    certificates: list[dict[str, Any]] | None = None


class Disclosure(BaseModel):
    seq: int | None = Field(description="position in this registry's audit chain")
    at: dt.datetime
    client_id: str
    action: str = Field(
        description="person.read, pregnancy.read, certificate.printed (reads here); notification.sent, "
        "notification.fetched, certificate.verified, person.read (reported by the exchange, "
        "verification or the person's other registry, where a print of her certificate is a person.read "
        "with detail.certificate_number: detail.discloser, detail.disclosure_id)"
    )
    purpose: str | None
    detail: dict[str, Any]


class Disclosures(BaseModel):
    model_config = _example(
        id_number=MOTHER,
        jurisdiction="320412",
        disclosures=[
            {
                "seq": 42,
                "at": "2026-01-05T08:30:00Z",
                "client_id": "dept-320412",
                "action": "person.read",
                "purpose": "social_services",
                "detail": {"jurisdiction": "320412", "sections": ["births", "migrations"]},
            }
        ],
    )
    id_number: str
    jurisdiction: str
    disclosures: list[Disclosure]


class PregnancyRecord(BaseModel):
    model_config = _example(
        pregnancy_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        mother_id_number=MOTHER,
        registered_in="440703",
        registered_on="2025-03-01",
        expected_delivery="2025-09-01",
        closed_on=None,
        outcome=None,
        jurisdiction="440703",
    )
    pregnancy_id: uuid.UUID
    mother_id_number: str
    registered_in: str
    registered_on: dt.date
    expected_delivery: dt.date | None
    closed_on: dt.date | None
    outcome: str | None
    jurisdiction: str
