"""Request and response bodies of the registry API (the OpenAPI document is generated from these)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.payloads import MEDICAL_CERTIFICATE_PATTERN, MaritalStatus, Sex
from shared.identity import DivisionCode, IdNumber, PastDate

Purpose = Literal[
    "registration", "maternal_care", "birth_registration", "certificate_issuance", "social_services"
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PersonIn(_In):
    id_number: IdNumber = Field(examples=["320412199001011233"])
    name: str = Field(min_length=1, max_length=64, examples=["王芳"])
    sex: Sex
    birth_date: PastDate = Field(examples=["1990-01-01"])
    hukou_division: DivisionCode = Field(description="place of household registration", examples=["320412"])
    residence_division: DivisionCode | None = Field(
        default=None, description="defaults to the hukou division"
    )


class PersonOut(BaseModel):
    id_number: str
    name: str
    sex: Sex
    birth_date: dt.date
    hukou_division: str
    residence_division: str
    jurisdiction: str
    source_division: str
    event_id: uuid.UUID


class MigrationIn(_In):
    kind: Literal["departed", "arrived", "returned"]
    id_number: IdNumber
    from_division: DivisionCode
    to_division: DivisionCode
    migration_date: PastDate
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="required when the person is not yet known here",
    )
    hukou_division: DivisionCode | None = Field(default=None, description="required when not yet known here")


class MigrationOut(BaseModel):
    migration_id: uuid.UUID
    kind: str
    id_number: str
    from_division: str
    to_division: str
    migration_date: dt.date
    jurisdiction: str
    event_id: uuid.UUID


class BirthIn(_In):
    medical_certificate_number: str = Field(pattern=MEDICAL_CERTIFICATE_PATTERN, examples=["O440123456"])
    child_name: str = Field(min_length=1, max_length=64)
    child_sex: Sex
    child_birth_date: PastDate
    child_id_number: IdNumber | None = None
    mother_id_number: IdNumber
    father_id_number: IdNumber | None = None
    birth_order: int | None = Field(
        default=None, ge=1, le=20, description="computed from the records if omitted"
    )


class BirthOut(BaseModel):
    birth_id: uuid.UUID
    medical_certificate_number: str
    child_name: str
    child_sex: Sex
    child_birth_date: dt.date
    mother_id_number: str
    father_id_number: str | None
    birth_order: int
    birth_division: str
    jurisdiction: str
    event_id: uuid.UUID


class CertificateIn(_In):
    holder_id_number: IdNumber
    valid_days: int | None = Field(default=None, ge=1, le=730)


class CertificateOut(BaseModel):
    certificate_number: str
    holder_id_number: str
    holder_name: str
    marital_status: MaritalStatus
    children_birth_dates: list[dt.date]
    issuer: str
    issued_on: dt.date
    valid_until: dt.date
    key_id: str
    status_index: int
    token: str = Field(description="compact JWS to print as a QR code")
    event_id: uuid.UUID


class PersonRecord(BaseModel):
    id_number: str
    name: str
    sex: Sex
    birth_date: dt.date
    hukou_division: str
    residence_division: str
    source_division: str
    jurisdiction: str
    migrations: list[dict[str, object]]
    births: list[dict[str, object]]
