"""Bodies of ``POST /v1/batches``: items of any write kind, and one result per item.

An item's ``kind``, ``target`` and ``body`` are documented as the single routes' schemas but
checked item by item (``batch_kinds``), so one bad item is refused on its own instead of
failing the whole batch; only an item that is not an object of these keys fails it.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, WithJsonSchema

from services.registry.entrypoints import schemas_certificates as sr
from services.registry.entrypoints import schemas_vital_events as s
from services.registry.entrypoints.batch_kinds import KINDS
from shared.openapi import Problem

MAX_ITEMS = 1000

AnyItemBody = (
    s.PersonIn
    | s.MigrationIn
    | s.MarriageIn
    | s.DissolutionIn
    | s.PregnancyIn
    | s.ClosureIn
    | s.BirthIn
    | s.CorrectionIn
    | sr.CertificateIn
    | sr.RevocationIn
)
AnyRecord = (
    s.PersonOut
    | s.MigrationOut
    | s.MarriageOut
    | s.PregnancyOut
    | s.BirthOut
    | s.CorrectionOut
    | sr.CertificateOut
    | sr.RevocationOut
)
_KIND_DOC = "; ".join(f"{name}: POST {kind.route}" for name, kind in KINDS.items())
NEW_WOMAN = "11010119950321002X"
MARRIAGE_ID = "7d2f3c4e-8a1b-4c2d-9e3f-0a1b2c3d4e5f"
ITEMS: list[dict[str, Any]] = [
    {"kind": "person", "body": {**s.PERSON, "id_number": NEW_WOMAN, "birth_date": "1995-03-21"}},
    {"kind": "migration", "body": {**s.MIGRATION, "id_number": NEW_WOMAN}},
    {"kind": "birth", "body": {**s.BIRTH, "child_birth_date": "2031-01-01"}},
    {
        "kind": "marriage_dissolution",
        "target": MARRIAGE_ID,
        "body": {"dissolution_date": "2025-06-30", "reason": "divorce"},
    },
]


class BatchItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Annotated[
        SkipValidation[str],
        WithJsonSchema({"type": "string", "enum": list(KINDS)}),
        Field(description=f"the write kind, and the single route whose rules apply: {_KIND_DOC}"),
    ]
    target: Annotated[
        SkipValidation[str | None],
        WithJsonSchema({"anyOf": [{"type": "string", "maxLength": 64}, {"type": "null"}]}),
        Field(
            description="the record acted on, the single route's path parameter: the marriage_id of a "
            "marriage_dissolution, the pregnancy_id of a pregnancy_closure, the certificate number "
            "of a certificate_revocation; absent for the other kinds"
        ),
    ] = None
    body: Annotated[
        SkipValidation[AnyItemBody], Field(description="what the kind's single route takes as its body")
    ]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"items": cast(Any, ITEMS)}]})
    items: list[BatchItemIn] = Field(
        min_length=1,
        json_schema_extra={"maxItems": MAX_ITEMS},  # checked by the route: a 413 naming the rule
        description=f"1 to {MAX_ITEMS} items, applied in this order",
    )


class BatchResult(BaseModel):
    index: int = Field(description="the item's position in the request, from 0")
    kind: str | None
    status: int = Field(description="what the single route would have answered: 201/200, or 4xx")
    resource: SkipValidation[AnyRecord] | None = Field(
        default=None, description="the record as the single route answers it (accepted items)"
    )
    problem: Problem | None = Field(
        default=None, description="problem+json naming the field and rule broken (refused items)"
    )


RESULTS: list[dict[str, Any]] = [
    {
        "index": 0,
        "kind": "person",
        "status": 201,
        "resource": {
            **ITEMS[0]["body"],
            "jurisdiction": "320412",
            "source_division": "320412",
            "event_id": s.EVENT_ID,
        },
    },
    {
        "index": 1,
        "kind": "migration",
        "status": 201,
        "resource": {
            **ITEMS[1]["body"],
            "migration_id": "5b0c9a52-1d7e-4c55-9d1e-3b1f7a0c2e11",
            "jurisdiction": "320412",
            "event_id": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
        },
    },
    {
        "index": 2,
        "kind": "birth",
        "status": 422,
        "problem": {
            "type": "urn:migrant-exchange:problem:invalid-input",
            "title": "The request breaks a validation rule",
            "status": 422,
            "detail": "child_birth_date: date is in the future",
            "errors": [
                {"field": "child_birth_date", "rule": "value_error", "message": "date is in the future"}
            ],
        },
    },
    {
        "index": 3,
        "kind": "marriage_dissolution",
        "status": 404,
        "problem": {
            "type": "urn:migrant-exchange:problem:not-found",
            "title": "Not found",
            "status": 404,
            "detail": "no such marriage in this jurisdiction's records",
            "errors": [
                {
                    "field": "marriage_id",
                    "rule": "exists",
                    "message": "no such marriage in this jurisdiction's records",
                }
            ],
        },
    },
]


class BatchOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"accepted": 2, "rejected": 2, "results": cast(Any, RESULTS)}]}
    )
    accepted: int = Field(description="items recorded, all in one transaction with their events")
    rejected: int = Field(description="items refused: nothing of them was written")
    results: list[BatchResult] = Field(description="one per item, in the request's order")
